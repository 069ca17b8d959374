"""The InfraValidator component (component.py): the candidate SavedModel loaded and called with
canned requests in a fresh process without the project's code (canned_requests.py), before the
push; TFX's InfraBlessing, which the Pusher takes as its infra_blessing input."""
