"""The top layer: the `clips-llava` command and the jobs that drive every package end to end.

- `cli.py`: the `clips-llava` console script, one registry of subcommands (each package's own `cli.py`);
- `demo.py`: `clips-llava demo`, the main job (world, towers, LM, both LLaVA stages, eval, report);
- `steps.py`: the resumable step runner the demo and the ablation share;
- `curves.py`: the stage-1/stage-2 loss chart of the demo's summary;
- `ablation.py`: `clips-llava demo --preset ablation`, the towers' text-reduction ablation.

Nothing below this package imports it: it runs the other packages' commands as subprocesses.
"""
