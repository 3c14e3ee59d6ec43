"""clips_llava_eval (the `eval/` folder): the lmms-eval harness for clips-llava — the local benchmark
suite over the synthetic world, the paper and LLaVA-1.5 suites, the runner and the gains report.

pyproject.toml installs this folder under the import name `clips_llava_eval`, not `eval`: a
top-level `eval` is generic enough that another distribution may ship one (pip would overwrite one
with the other), and `import eval` shadows the builtin in the importing module.

    from clips_llava_eval.report import build_report
"""
