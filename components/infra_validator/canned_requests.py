"""The infra check's client: a SavedModel loaded and called as a server or another team's service
would, in a fresh process with none of the project's code on its path.

    python -I canned_requests.py REQUEST_JSON
    NANOGPT_TFX_PRESTARTED=1 python -I canned_requests.py   # (check.py) REQUEST_JSON on stdin

REQUEST_JSON: {"model_dir", "block_size", "vocab_size", "batches": [1, 4], "max_new_tokens" (0: the
whole context), "project_root", "project_packages", "parent_pid"} (it dies with its parent). This
file imports nothing but the standard library and TensorFlow (run with -I, Python puts neither its
directory nor the environment's PYTHONPATH on the path); it also takes out of the import system
whatever would still find the project's packages (an editable install's finder), and checks that
none of them can be imported. Then it loads the model and calls every
signature with canned requests:

- tokenizer: the tokenizer's description, as JSON (its kind; a character model's characters);
- logits: token ids of a whole context (block_size), batch 1 and 4: finite logits of the shape;
- generate and serving_default: a prompt of token ids, batch 1 and 4, max_new_tokens filling the
  rest of the context (the largest a request gets from the cache: block_size in all; at most the
  request's max_new_tokens when it gives one): the prompt kept, that many new ids within the
  vocabulary;
- generate_text (character models): a prompt string of the model's characters, 1 and 4 samples,
  the same max_new_tokens: texts that start with the prompt.

It prints one JSON line: {"ok": true, "calls": [...], "seconds": ...}, or {"ok": false, "failed":
"what failed, in one line"}; the exit status is 0 either way (a crash is the caller's to report).
"""

import concurrent.futures
import importlib.util
import json
import os
import sys
import time

PROMPT_TOKENS = 4


def die_with_parent(parent):
    """End this process when the process that started it dies (Linux's PR_SET_PDEATHSIG), so that a
    kill -9 of the pipeline leaves no check running; set here rather than by the parent, whose
    fork would run gRPC's fork handlers."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before that: this process is an orphan already
        os._exit(1)


def hide_project(root, packages):
    """Take out of the import system what finds the project's packages under `root`; the names of
    any that are still importable from there."""
    root = os.path.realpath(root)

    def ours(name, spec):
        """Whether a module spec is the project's module `name`: root/name.py or under root/name/."""
        origin = spec and (spec.origin or (list(spec.submodule_search_locations or []) or [""])[0])
        path = os.path.realpath(origin) if origin else ""
        return path == os.path.join(root, name + ".py") or path.startswith(os.path.join(root, name) + os.sep)

    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != root]
    for finder in list(sys.meta_path):
        find = getattr(finder, "find_spec", None)
        for name in packages:
            try:
                spec = find(name, None) if find else None
            except Exception:  # a finder that cannot answer this question finds nothing of ours
                spec = None
            if ours(name, spec):
                sys.meta_path.remove(finder)
                break
    importlib.invalidate_caches()
    return [name for name in packages if ours(name, importlib.util.find_spec(name))]


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def call(signature, name, **inputs):
    """The signature called with `inputs` converted to its input types."""
    import tensorflow as tf

    specs = signature.structured_input_signature[1]
    unknown = sorted(set(specs) - set(inputs))
    check(not unknown, f"{name} takes inputs the infra check does not know: {', '.join(unknown)}")
    return signature(**{key: tf.constant(inputs[key], specs[key].dtype) for key in specs})


def requests(loaded, request):
    """Every signature called with its canned requests; a line for each call."""
    import numpy as np

    signatures = loaded.signatures
    for required in ("generate", "logits", "tokenizer"):
        check(required in signatures, f"the SavedModel has no {required!r} signature (it has {sorted(signatures)})")
    calls = []
    tokenizer = json.loads(call(signatures["tokenizer"], "tokenizer")["tokenizer"].numpy())
    calls.append(f"tokenizer ({tokenizer.get('kind')})")
    chars = tokenizer.get("chars")
    check(tokenizer.get("kind") in ("char", "gpt2"), f"tokenizer: unknown kind {tokenizer.get('kind')!r}")
    check((chars is not None) == ("generate_text" in signatures),
          "a character model serves generate_text, a model of other tokens does not")
    block_size, vocab_size = request["block_size"], request["vocab_size"]
    vocab_limit = len(chars) if chars else min(vocab_size, 50257)
    prompt_length = min(PROMPT_TOKENS, block_size - 1)
    max_new_tokens = block_size - prompt_length  # the whole context: the most the key/value cache answers
    if request.get("max_new_tokens"):
        max_new_tokens = min(max_new_tokens, request["max_new_tokens"])
    length = prompt_length + max_new_tokens

    def logits_request(batch, ids):
        logits = call(signatures["logits"], "logits", idx=ids)["logits"].numpy()
        check(logits.shape == (batch, block_size, vocab_size), f"logits (batch {batch}): shape {logits.shape}, "
              f"expected {(batch, block_size, vocab_size)}")
        check(np.isfinite(logits).all(), f"logits (batch {batch}): not all finite")
        return f"logits (batch {batch}, {block_size} tokens)"

    def generate_request(name, batch, prompt):
        out = call(signatures[name], name, idx=prompt, max_new_tokens=max_new_tokens, temperature=1.0, top_k=0,
                   top_p=1.0, seed=1, eot_token=-1, vocab_limit=vocab_limit)
        tokens, lengths = out["tokens"].numpy(), out["lengths"].numpy()
        what = f"{name} (batch {batch}, max_new_tokens {max_new_tokens})"
        check(tokens.shape == (batch, length), f"{what}: tokens of shape {tokens.shape}")
        check((lengths == length).all(), f"{what}: lengths {lengths.tolist()}")
        check((tokens[:, :prompt_length] == prompt).all(), f"{what}: the prompt is not kept")
        check(((tokens >= 0) & (tokens < vocab_limit)).all(), f"{what}: ids outside the vocabulary")
        return what

    def generate_text_request(batch):
        text = "".join(chars[:prompt_length])
        out = call(signatures["generate_text"], "generate_text", prompt=text, num_samples=batch,
                   max_new_tokens=max_new_tokens, temperature=1.0, top_k=0, top_p=1.0, seed=1)
        texts = [t.decode("utf-8") for t in out["text"].numpy()]
        what = f"generate_text ({batch} sample{'' if batch == 1 else 's'}, max_new_tokens {max_new_tokens})"
        check(len(texts) == batch, f"{what}: {len(texts)} texts")
        check(all(t.startswith(text) and len(t) == length for t in texts), f"{what}: {texts[0][:40]!r}...")
        return what

    requests_to_make, generate_requests = [], set()
    for batch in request["batches"]:
        ids = np.arange(block_size * batch).reshape(batch, block_size) % vocab_limit
        requests_to_make.append(lambda batch=batch, ids=ids: logits_request(batch, ids))
        for name in ("generate", "serving_default"):
            if name in signatures:
                if name == "generate":
                    generate_requests.add(len(requests_to_make))
                requests_to_make.append(lambda name=name, batch=batch, prompt=ids[:, :prompt_length]:
                                        generate_request(name, batch, prompt))
        if chars:
            requests_to_make.append(lambda batch=batch: generate_text_request(batch))
    # Two at a time, as a server answers concurrent requests: each signature's first call (its graph
    # optimized, its XLA clusters compiled for the batch size) keeps a core busy for a second or two.
    # The slowest first calls, generate's at each batch size (the other signatures reuse its
    # compilation), are made first, side by side; the answers are checked in the order above, and
    # the first failure in that order is the one reported.
    first = sorted(range(len(requests_to_make)), key=lambda i: i not in generate_requests)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        answers = {i: pool.submit(requests_to_make[i]) for i in first}
        calls.extend(answers[i].result() for i in range(len(requests_to_make)))
    unknown = sorted(set(signatures) - {"generate", "serving_default", "logits", "tokenizer", "generate_text"})
    check(not unknown, f"signatures the infra check has no requests for: {', '.join(unknown)}")
    return calls


def main(argv):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # core/prestart.py's protocol, written out (this process cannot import the project): a process
    # started ahead of its request imports TensorFlow, then reads the request from stdin.
    if os.environ.pop("NANOGPT_TFX_PRESTARTED", None) == "1":
        die_with_parent(os.getppid())
        import tensorflow  # noqa: F401  (what it was started ahead for)

        line = sys.stdin.readline()
        if not line:  # no request came: the run ended without a check
            os._exit(0)
        request = json.loads(line)
    else:
        request = json.loads(argv[1])
        die_with_parent(request["parent_pid"])
    started = time.time()
    visible = hide_project(request["project_root"], request["project_packages"])
    if visible:
        return {"ok": False, "failed": f"the project's code is importable in the check's process: {', '.join(visible)}"}
    import tensorflow as tf

    stage = "load"
    try:
        loaded = tf.saved_model.load(request["model_dir"])
        stage = "requests"
        calls = requests(loaded, request)
    except Exception as e:  # what failed, in one line: the model is not pushed
        message = " ".join(str(e).split())[:500] or type(e).__name__
        where = f"loading the SavedModel {request['model_dir']}" if stage == "load" else "a canned request"
        return {"ok": False, "failed": f"{where}: {type(e).__name__}: {message}"}
    return {"ok": True, "calls": calls, "seconds": round(time.time() - started, 1)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv)), flush=True)
