"""What a local pipeline run recorded, as the end-to-end tests read it: its ML Metadata store, the
states of its component executions, its pushed versions, a component's output artifacts, the
records of an Examples artifact and what a pushed model generates."""

import os

from pipeline import metadata

# A model small enough that a whole pipeline run takes seconds: checkpoints at its evaluations of 20 and 40.
TINY_TRAINING = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=40,
                     eval_interval=20, eval_iters=2, log_interval=10, learning_rate=3e-3, warmup_iters=5,
                     lr_decay_iters=40, min_lr=3e-4)
# A pipeline run of it, exported with the graph loop: serving_loop=auto measures the loops at every
# export (seconds), which the suite's default run (tests/conftest.py char_run) does as `runner.py run` does.
TINY_RUN = dict(TINY_TRAINING, serving_loop="graph")


def store(config):
    return metadata.sqlite_store(config.metadata_path)


def execution_ids(config):
    """The ids of the store's executions (none before the first run made the store)."""
    if not os.path.exists(config.metadata_path):
        return set()
    return {e.id for e in store(config).get_executions()}


def component_states(config, exclude=frozenset()):
    """The state of each component execution by type name (resolvers, which always run, left
    out), but for the executions in `exclude`."""
    metadata = store(config)
    type_names = {t.id: t.name.rsplit(".", 1)[-1] for t in metadata.get_execution_types()}
    return {type_names[e.type_id]: e.last_known_state for e in metadata.get_executions()
            if e.id not in exclude and not type_names[e.type_id].endswith("Resolver")}


def rerun(config):
    """Run the pipeline of config (again) here; the states of that run's component executions by type name."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from orchestration.local import local_pipeline

    before = execution_ids(config)
    LocalDagRunner().run(local_pipeline(config))
    return component_states(config, exclude=before)


def first(config, type_name):
    """The first artifact of the type the run's store holds (char_run's own, whatever ran since)."""
    return min(store(config).get_artifacts_by_type(type_name), key=lambda a: a.id)


def last_blessed_model(config):
    """The uri of the latest model the LMEvaluator blessed."""
    blessings = [b for b in store(config).get_artifacts_by_type("ModelBlessing")
                 if b.custom_properties["blessed"].int_value == 1]
    return max(blessings, key=lambda b: b.id).custom_properties["current_model"].string_value


def pushed_versions(config):
    return sorted(os.listdir(config.serving_dir)) if os.path.isdir(config.serving_dir) else []


def output_of(config, component, output, first):
    """The first (or last live) artifact under <pipeline_root>/<component>/<output>/."""
    from ml_metadata.proto import metadata_store_pb2

    prefix = os.path.join(config.pipeline_root, component, output) + os.sep
    artifacts = sorted((a for a in store(config).get_artifacts() if a.uri.startswith(prefix)
                        and a.state == metadata_store_pb2.Artifact.LIVE), key=lambda a: a.id)
    return (artifacts[0] if first else artifacts[-1]).uri


def records(examples_uri):
    """Every split's records as {feature: values}, in a canonical order (neither a Beam writer's
    shard order nor the order in which a tf.train.Example serializes its features is fixed)."""
    import tensorflow as tf

    def parsed(serialized):
        features = tf.train.Example.FromString(serialized).features.feature
        return sorted((key, tuple(getattr(value, value.WhichOneof("kind")).value)) for key, value in features.items())

    return {split: sorted(parsed(r) for r in tf.data.TFRecordDataset(
                tf.io.gfile.glob(os.path.join(examples_uri, split, "*")), compression_type="GZIP").as_numpy_iterator())
            for split in sorted(os.listdir(examples_uri)) if split.startswith("Split-")}


def generated_texts(serving_path):
    """Two samples of the pushed model's generate_text for "ROMEO:", seed 7."""
    import tensorflow as tf

    loaded = tf.saved_model.load(serving_path)
    return loaded.signatures["generate_text"](
        prompt=tf.constant("ROMEO:"), num_samples=tf.constant(2), max_new_tokens=tf.constant(20),
        temperature=tf.constant(0.8), top_k=tf.constant(10), top_p=tf.constant(1.0),
        seed=tf.constant(7, tf.int64))["text"].numpy().tolist()
