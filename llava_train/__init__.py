"""llava_train: two-stage LLaVA training (projector pretraining, instruction tuning) on HF Trainer
+ DeepSpeed, the embedded synthetic world, the language model for it, chat, and the `clips-llava` CLI.

The models this package trains are stock `transformers` Llava checkpoints; nothing here is needed
to load them.
"""
