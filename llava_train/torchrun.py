"""`torchrun` for the stage scripts (LAUNCHER=torchrun), without the launcher's own traceback on a failed worker.

    python -m llava_train.torchrun --nproc_per_node 2 -m llava_train.train --config FILE ...

The same arguments and behaviour as `python -m torch.distributed.run`, except when a worker exits
with an error: stock torchrun then raises `ChildFailedError` and prints a Python traceback of its
own below the worker's one-line error (`clips-llava llava train: error: ...`) and exits 1. Here it
prints one line naming the failed ranks and exits with the worker's exit code (2 for bad input),
as the deepspeed launcher does.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        failures = sorted(e.failures.items())
        codes = [f.exitcode for _, f in failures if isinstance(f.exitcode, int) and f.exitcode > 0]
        ranks = ", ".join(f"rank {rank} (exit code {f.exitcode})" for rank, f in failures)
        print(f"torchrun: worker failed: {ranks}", file=sys.stderr)
        return codes[0] if codes else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
