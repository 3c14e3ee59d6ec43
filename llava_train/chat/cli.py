"""`clips-llava chat`: talk to a Llava model in the terminal, streaming, optionally 4/8-bit.

    clips-llava chat --model runs/demo/llava --image cat.png                 # interactive
    clips-llava chat --model runs/demo/llava --image cat.png --prompt "What is in the image?"
    echo "Describe the image." | clips-llava chat --model DIR --image cat.png --prompt -
    clips-llava chat --model runs/lora-adapter --base runs/demo/llava --load-4bit
    clips-llava chat --model llava-hf/llava-1.5-7b-hf --load-4bit --image cat.png   # hub id, online

Interactive commands: `/image PATH` (switch image, clears the history), `/reset`, `/exit`;
Ctrl-D or Ctrl-C leaves (Ctrl-C during an answer stops the generation first). Bad input never
shows a traceback: a missing model dir or a non-Llava dir is one line on stderr and exit code 2;
a bad image is one line and exit 2 in one-shot mode, one line and the session goes on when
interactive. The model/session logic is in session.py.
"""
from __future__ import annotations

import argparse
import sys

EXAMPLE = """example:
  clips-llava chat --model runs/demo/llava --image runs/demo/world/eval/pope/images/0.png \\
      --prompt "Is there a red circle in the image?" --temperature 0
"""
COMMANDS_HELP = "commands: /image PATH (switch image, clears history), /reset, /exit; Ctrl-D or Ctrl-C quits"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clips-llava chat",
        description="Chat with a stock HF Llava model (or a LoRA adapter on one), streaming the answer.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="DIR", help="HF Llava directory (or hub id), or a LoRA adapter directory (with --base)")
    p.add_argument("--base", metavar="DIR", help="base Llava directory for a LoRA adapter given as --model")
    p.add_argument("--image", metavar="PATH", help="image for the first user turn")
    p.add_argument("--prompt", metavar="TEXT", help="one-shot: answer TEXT and exit ('-' reads it from stdin)")
    p.add_argument("--temperature", type=float, default=0.2, help="sampling temperature; 0 = greedy (default 0.2)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling when temperature > 0")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--system", metavar="TEXT", help="system prompt (default: the chat template's own)")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--load-4bit", action="store_true", help="quantize the language model to 4-bit nf4 (bitsandbytes)")
    q.add_argument("--load-8bit", action="store_true", help="quantize the language model to 8-bit (bitsandbytes)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=None, help="seed for sampling (reproducible answers)")
    p.add_argument("--verbose", action="store_true", help="keep transformers' warnings and progress bars")
    return p


def _error(msg: str) -> int:
    print(f"clips-llava chat: error: {msg}", file=sys.stderr)
    return 2


def _quiet_libraries() -> None:
    import logging

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # bitsandbytes logs at every int8 matmul whose input is not fp16 (always the case on CPU), and
    # once about an optional CPU kernel package; neither is actionable for a chat user.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def _print_answer(session, text: str) -> None:
    for chunk in session.stream(text):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


def one_shot(session, prompt: str) -> int:
    _print_answer(session, prompt)
    return 0


def _command(session, line: str) -> bool:
    """Run a /command; returns False when the session should end."""
    from llava_train.chat.session import ChatInputError

    cmd, _, arg = line.partition(" ")
    arg = arg.strip()
    if cmd in ("/exit", "/quit"):
        return False
    if cmd == "/reset":
        session.reset()
        print("(history cleared)")
    elif cmd == "/image":
        if not arg:
            print("usage: /image PATH")
            return True
        try:
            session.set_image(arg)
            print(f"(image: {arg}; history cleared)")
        except ChatInputError as e:
            print(f"error: {e}")
    elif cmd == "/help":
        print(COMMANDS_HELP)
    else:
        print(f"unknown command {cmd}; {COMMANDS_HELP}")
    return True


def interactive(session, banner: str) -> int:
    echo = not sys.stdin.isatty()  # piped input: echo it so the transcript reads like a chat
    if not echo:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
    print(banner, file=sys.stderr)
    while True:
        try:
            line = input("USER: ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if echo:
            print(line)
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not _command(session, line):
                return 0
            continue
        print("ASSISTANT: ", end="", flush=True)
        answer = session.stream(line)
        try:
            for chunk in answer:
                sys.stdout.write(chunk)
                sys.stdout.flush()
        except KeyboardInterrupt:
            answer.close()  # stops the generation thread before we leave
            print()
            return 0
        print()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help is 0, usage errors are 2
        return int(e.code or 0)
    if args.temperature < 0:
        return _error("--temperature must be >= 0")
    if args.max_new_tokens < 1:
        return _error("--max-new-tokens must be >= 1")
    prompt = args.prompt
    if prompt == "-":
        prompt = sys.stdin.read()
    if prompt is not None and not prompt.strip():
        return _error("the prompt is empty")

    # Heavy imports only now, so --help and usage errors stay fast.
    from llava_train.chat.session import ChatInputError, ChatSession, load_image, load_llava
    from llava_train.errors import report

    if not args.verbose:
        _quiet_libraries()
    image, image_error = None, None
    if args.image is not None:
        try:
            image = load_image(args.image)
        except ChatInputError as e:
            if prompt is not None:
                return report("clips-llava chat", e)
            image_error = str(e)
    quant = "4bit" if args.load_4bit else "8bit" if args.load_8bit else None
    try:
        model, processor = load_llava(args.model, base=args.base, quant=quant, device=args.device)
    except ChatInputError as e:
        return report("clips-llava chat", e)
    if args.seed is not None:
        from transformers import set_seed

        set_seed(args.seed)
    session = ChatSession(model, processor, temperature=args.temperature,
                          max_new_tokens=args.max_new_tokens, top_p=args.top_p, system=args.system)
    session.image = image

    try:
        if prompt is not None:
            return one_shot(session, prompt.strip())
        where = f"{args.model}" + (f" (base {args.base})" if args.base else "")
        banner = f"clips-llava chat: {where} on {model.device}" + (f", {quant}" if quant else "")
        banner += f"; image: {args.image if image is not None else 'none'}\n{COMMANDS_HELP}"
        if image_error:
            banner += f"\nerror: {image_error} (continuing without an image)"
        return interactive(session, banner)
    except KeyboardInterrupt:
        print()
        return 0
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
