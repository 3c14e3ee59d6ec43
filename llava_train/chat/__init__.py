"""Chat with a trained Llava model: `cli.py` is `clips-llava chat`, `session.py` the model loading
(local dir, LoRA adapter, hub id; 4/8-bit) and the streaming conversation it drives.

    from llava_train.chat.session import ChatSession, load_llava
"""
