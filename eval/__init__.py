"""eval: lmms-eval harness for clips-llava (local benchmark suite over the synthetic world, the
paper and LLaVA-1.5 suites, and the gains report)."""
