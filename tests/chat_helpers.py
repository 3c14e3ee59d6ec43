"""Helpers for the chat tests: images, a LoRA adapter on the tiny Llava, a pseudo-terminal driver.

    from tests.chat_helpers import PtyProcess, make_image, make_lora_adapter
"""
from __future__ import annotations

import os
import pty
import re
import select
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_image(path: Path, color: str = "red", size=(40, 24)) -> Path:
    from PIL import Image

    Image.new("RGB", size, color).save(path)
    return path


def make_lora_adapter(base_dir: Path, out_dir: Path, seed: int = 1) -> Path:
    """A peft LoRA adapter on the tiny Llava's language model (projector in modules_to_save),
    with random non-zero B matrices so that loading it visibly changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(base_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)",
                        modules_to_save=["multi_modal_projector"])
    model = get_peft_model(model, config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g))
    model.save_pretrained(out_dir)
    return out_dir


class PtyProcess:
    """Run a command on a pseudo-terminal, like a user at a keyboard (stdlib `pty`, no pexpect)."""

    def __init__(self, argv: list[str], env: dict | None = None):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child: the pty is its controlling terminal, so ^C sends SIGINT
            # as at a real terminal: a runner started in the background (`cmd &` in a non-interactive
            # shell) has SIGINT ignored, and an ignored signal stays ignored across exec
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])  # a blocked signal stays blocked too
            os.chdir(ROOT)
            os.execvpe(argv[0], argv, {**os.environ, **(env or {})})
        self.output = ""
        self.exit_code: int | None = None

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not data:
            return False
        self.output += data.decode("utf-8", "replace").replace("\r\n", "\n")
        return True

    def expect(self, pattern: str, timeout: float = 60.0, start: int = 0) -> re.Match:
        """Wait until `pattern` (regex) appears in the output after offset `start`."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.compile(pattern).search(self.output, start)
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 1.0)) and not self.alive():
                if m := re.compile(pattern).search(self.output, start):
                    return m
                raise AssertionError(f"{pattern!r} not seen; output so far:\n{self.output}")

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def alive(self) -> bool:
        if self.exit_code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
        return self.exit_code is None

    def wait(self, timeout: float = 30.0) -> int:
        """Exit code of the child (drains its output); kills it if it does not end in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read(0.2)
            if not self.alive():
                while self._read(0.05):
                    pass
                os.close(self.fd)
                return self.exit_code
        os.kill(self.pid, signal.SIGKILL)
        self.exit_code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])  # reaped: alive() must not wait again
        raise AssertionError(f"process did not exit; output:\n{self.output}")


def chat_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "llava_train.chat.cli", *args]
