"""Command line for the trainer.

    python -m scope_lib.train --config configs/tiny.yaml --method scope [--optim.lr 1e-4 ...]
    accelerate launch -m scope_lib.train --config configs/paper_distill_1p5b.yaml --method opd

Any config key can be overridden with `--dotted.key value` (values are parsed as YAML, so
`--scope.student_direction reversed` and `--optim.lr 1e-4` both work); an unknown key or an
invalid value fails before anything is loaded, naming the key. A run resumes from the newest
checkpoint in its output directory that loads; an output directory that holds another
config's run is refused (exit status 2) before anything in it is written.
"""

from __future__ import annotations

import argparse
import os
import sys

from scope_lib.config import load_config, parse_override, require_rollout_engine


def parse_args(argv: list[str]) -> tuple[str, dict]:
    parser = argparse.ArgumentParser(prog="python -m scope_lib.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML preset path or name in configs/ (tiny, smol, ...)")
    known, rest = parser.parse_known_args(argv)
    overrides: dict = {}
    i = 0
    while i < len(rest):
        key = rest[i]
        if not key.startswith("--") or i + 1 >= len(rest):
            parser.error(f"expected '--key value' pairs after --config, got {rest[i:]!r}")
        name, value = key[2:], rest[i + 1]
        try:
            overrides[name] = parse_override(value, key=name)  # bounded, safe YAML; errors name the key
        except ValueError as error:
            parser.error(str(error))
        i += 2
    return known.config, overrides


def main(argv: list[str] | None = None) -> int:
    path, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(path, overrides)
        require_rollout_engine(cfg)  # e.g. 'vllm' where vLLM is not installed: refused before any model is built
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from scope_lib.trainer import train  # start-up cost: torch and the models load after the arguments check

    try:
        result = train(cfg)
    except ValueError as error:
        # Bad input (another config's run in output_dir, a damaged file, a bad data row, a shipped
        # world failing its hash check, ...): one line naming it, no traceback. The traceback is
        # there for those who ask (env SCOPE_TRACEBACK=1): a ValueError may also be a bug.
        if os.environ.get("SCOPE_TRACEBACK"):
            raise
        print("error: " + "; ".join(line.strip() for line in str(error).splitlines() if line.strip()), file=sys.stderr)
        return 2
    last = result.history[-1] if result.history else {}
    print(f"finished {cfg.method} run in {result.run_dir}: " + ", ".join(f"{k}={v:.4g}" for k, v in last.items()
                                                                         if isinstance(v, float) and not k.startswith("time/")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
