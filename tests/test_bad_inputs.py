"""Every bad input, through every entry point: one clear line naming it (exit 2) or a counted skip; never a traceback.

    pytest -q tests/test_bad_inputs.py

The inputs are the generated corpus of tests/bad_inputs.py, written into a temporary directory.
Each case runs `clips-llava ...` in-process (`llava_train.pipeline.cli.main`, output captured); one stage
script and one interactive chat run as real processes. Every case also checks that nothing was
written outside its output directory: the inputs and the shared fixtures are unchanged and the
working directory stays empty. At the end the module prints the tally: inputs tried / clean
errors / counted skips / accepted (odd but valid) / tracebacks / hangs / silent corruptions.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from llava_train.pipeline import cli
from tests import bad_inputs as bi
from tests.llava_helpers import REPO, offline_env

TALLY: Counter = Counter()
ONE_SHOT = ["--prompt", "Hi", "--temperature", "0", "--max-new-tokens", "2", "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def _print_tally(request):
    yield
    line = (f"bad inputs: {TALLY['inputs']} tried / {TALLY['clean errors']} clean errors / "
            f"{TALLY['counted skips']} counted skips / {TALLY['accepted']} accepted / "
            f"{TALLY['tracebacks']} tracebacks / {TALLY['hangs']} hangs / "
            f"{TALLY['silent corruptions']} silent corruptions")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():  # shown even with -q, outside the captured output
        print("\n" + line)


def _snapshot(*roots: Path) -> dict:
    """Every path under `roots` (symlinks not followed) with its size and mtime."""
    seen = {}
    for root in roots:
        for base, dirs, files in os.walk(root):
            for name in dirs + files:
                p = Path(base) / name
                st = p.lstat()
                seen[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return seen


@pytest.fixture(scope="module")
def corpus(tiny_world, tiny_llava_dir, tmp_path_factory):
    """Every bad input of the module, written once: tmp/in (inputs), tmp/out (outputs), tmp/cwd (empty)."""
    from tests.chat_helpers import make_lora_adapter

    root = tmp_path_factory.mktemp("bad_inputs")
    inp, out, cwd = root / "in", root / "out", root / "cwd"
    for d in (inp, out, cwd):
        d.mkdir()
    good = json.loads((tiny_world / "llava/stage1.json").read_text())
    images = inp / "images"
    shutil.copytree(tiny_world / "llava/images", images)
    bi.write_images(images)
    data = bi.write_data_files(inp / "data", good)
    names = [*bi.BAD_IMAGES, *bi.ODD_IMAGES]
    data["images.json"] = inp / "data/images.json"
    data["images.json"].write_text(json.dumps([dict(good[i], id=n, image=n) for i, n in enumerate(names)]))
    files = bi.write_bytes_files(inp / "files")
    models = bi.damage_model_dir(tiny_llava_dir, inp / "models")
    lm = inp / "models/language_model"  # a dir that is an LM, not a Llava (model_type llama)
    shutil.copytree(tiny_llava_dir, lm)
    text_config = json.loads((lm / "config.json").read_text())["text_config"]  # tiny, should anything load it
    (lm / "config.json").write_text(json.dumps({**text_config, "model_type": "llama"}))
    lm_truncated = inp / "models/language_model_truncated"
    shutil.copytree(lm, lm_truncated)
    bi.truncate(lm_truncated / "model.safetensors", 0.5)
    lora = make_lora_adapter(tiny_llava_dir, inp / "lora")
    lora_truncated = inp / "lora_truncated"
    shutil.copytree(lora, lora_truncated)
    bi.truncate(lora_truncated / "adapter_model.safetensors", 0.5)
    lora_no_base = inp / "lora_no_base"
    shutil.copytree(lora, lora_no_base)
    cfg = json.loads((lora / "adapter_config.json").read_text())
    (lora_no_base / "adapter_config.json").write_text(json.dumps({k: v for k, v in cfg.items()
                                                                  if k != "base_model_name_or_path"}))
    base_cfg = yaml.safe_load((REPO / "configs/llava/stage1_tiny.yaml").read_text())
    configs = bi.llava_train_configs(inp / "configs", base_cfg)
    arch = REPO / "configs/clips/models/tiny.json"
    clips_configs = bi.write_clips_configs(inp / "clips_configs", arch)
    open_clip_corrupt = inp / "open_clip_corrupt"  # open_clip dir: valid config, corrupt weights
    open_clip_corrupt.mkdir()
    (open_clip_corrupt / "open_clip_config.json").write_text(json.dumps({"model_cfg": json.loads(arch.read_text())}))
    (open_clip_corrupt / "open_clip_model.safetensors").write_bytes(struct.pack("<Q", 10) + b"{not json}")
    open_clip_list = inp / "open_clip_config_list"
    open_clip_list.mkdir()
    (open_clip_list / "open_clip_config.json").write_text("[1, 2]")
    tower_info_bad = inp / "tower_info_malformed"  # an exported-tower-like dir whose tower_info.json is malformed
    shutil.copytree(tiny_llava_dir, tower_info_bad)
    (tower_info_bad / "tower_info.json").write_text("{oops")
    projector_bin = inp / "files/mm_projector.bin"
    projector_bin.write_bytes(b"PK\x03\x04 not a zip archive")
    projector_st = bi.truncate(Path(shutil.copy(tiny_llava_dir / "model.safetensors",
                                                inp / "files/mm_projector.safetensors")), 50)
    retrieval_bad = inp / "files/retrieval_wrong_types.json"
    retrieval_bad.write_text(json.dumps({"images": [{"filename": 3, "sentences": "x"}]}))
    results = inp / "eval_run/lmms-eval/model/20260101_results.json"  # an lmms-eval results file, malformed
    results.parent.mkdir(parents=True)
    results.write_text("{bad json")
    world = inp / "world"  # the eval splits of the tiny world, one pope image corrupted
    shutil.copytree(tiny_world / "eval", world / "eval")
    rows = [json.loads(line) for line in (world / "eval/pope.jsonl").read_text().splitlines() if line.strip()]
    bi.truncate(world / "eval" / rows[0]["image"], 40)
    pope_skips = sum(r["image"] == rows[0]["image"] for r in rows)
    return SimpleNamespace(root=root, inp=inp, out=out, cwd=cwd, images=images, data=data, files=files,
                           models=models, lm=lm, lm_truncated=lm_truncated, lora=lora,
                           lora_truncated=lora_truncated, lora_no_base=lora_no_base, configs=configs,
                           clips_configs=clips_configs, open_clip_corrupt=open_clip_corrupt,
                           open_clip_list=open_clip_list, tower_info_bad=tower_info_bad,
                           projector_bin=projector_bin, projector_st=projector_st, retrieval_bad=retrieval_bad,
                           results=results, world=world, pope_skips=pope_skips, llava=tiny_llava_dir,
                           tiny_world=tiny_world)


@dataclass
class Result:
    rc: int
    out: str
    err: str


@pytest.fixture
def run(corpus, capsys, monkeypatch):
    """run(argv): `clips-llava ARGV` in-process, in an empty working directory; checks that nothing
    outside OUT changed and that no traceback was printed."""
    monkeypatch.chdir(corpus.cwd)
    monkeypatch.delenv("CLIPS_LLAVA_DEBUG", raising=False)
    watched = (corpus.inp, corpus.llava, corpus.tiny_world, corpus.cwd)

    def _run(argv: list, stdin: str | None = None) -> Result:
        argv = [str(a) for a in argv]
        before = _snapshot(*watched)
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        TALLY["inputs"] += 1
        try:
            rc = cli.main(argv)
        except SystemExit as e:  # argparse usage errors
            rc = e.code
        except BaseException:
            TALLY["tracebacks"] += 1
            raise
        out, err = capsys.readouterr()
        if "Traceback" in out + err:
            TALLY["tracebacks"] += 1
            pytest.fail(f"traceback for {argv}:\n{err[-3000:]}")
        if _snapshot(*watched) != before:
            TALLY["silent corruptions"] += 1
            pytest.fail(f"{argv} wrote outside its output directory")
        return Result(rc, out, err)

    return _run


def expect_error(r: Result, prog: str, *needles) -> str:
    """Exit 2 and exactly one `PROG: error: ...` line holding every needle (the input's name first)."""
    lines = [line for line in r.err.splitlines() if line.startswith(f"{prog}: error: ")]
    assert r.rc == 2 and len(lines) == 1, (r.rc, r.err[-2000:])
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    TALLY["clean errors"] += 1
    return lines[0]


def _out(corpus, name: str) -> Path:
    return corpus.out / name


# --- images ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(bi.BAD_IMAGES))
def test_chat_one_shot_bad_image(corpus, run, name):
    path = corpus.images / name
    r = run(["chat", "--model", corpus.llava, "--image", path, *ONE_SHOT])
    why = {"bomb.png": "too large to decode", "directory.png": "is a directory", "symlink_loop.png": "symlink loop",
           "missing.png": "not found", "truncated.png": "truncated"}.get(name, "cannot read image")
    expect_error(r, "clips-llava chat", path, why)
    assert r.out == ""


@pytest.mark.parametrize("name", bi.ODD_IMAGES)
def test_chat_one_shot_odd_image_works(corpus, run, name):
    r = run(["chat", "--model", corpus.llava, "--image", corpus.images / name, *ONE_SHOT])
    assert r.rc == 0 and r.out.strip() and "error" not in r.err, r.err[-2000:]
    TALLY["accepted"] += 1


def test_chat_interactive_bad_images_keep_the_session(corpus, run):
    bad = [n for n in bi.BAD_IMAGES]
    script = "".join(f"/image {corpus.images / n}\n" for n in bad) + f"/image {corpus.images / 'cmyk.jpg'}\nHello\n"
    r = run(["chat", "--model", corpus.llava, "--image", corpus.images / "bomb.png", "--temperature", "0",
             "--max-new-tokens", "2", "--device", "cpu"], stdin=script)
    assert r.rc == 0
    assert "bomb.png" in r.err and "continuing without an image" in r.err  # the --image one
    errors = [line for line in r.out.splitlines() if "error: " in line]
    assert len(errors) == len(bad) and all(n in e for n, e in zip(bad, errors)), errors
    assert "(image: " in r.out and "ASSISTANT: " in r.out.split("Hello", 1)[1]  # and it went on
    TALLY["clean errors"] += len(bad) + 1
    TALLY["inputs"] += len(bad)  # one run: --image and every /image


def test_chat_interactive_process(corpus):
    """The same through a real `clips-llava chat` process (piped stdin): it must not die on any of them."""
    script = f"/image {corpus.images / 'bomb.png'}\n/image {corpus.images / 'symlink_loop.png'}\nHello\n/exit\n"
    TALLY["inputs"] += 2
    try:
        r = subprocess.run([sys.executable, "-m", "llava_train.pipeline.cli", "chat", "--model", str(corpus.llava),
                            "--temperature", "0", "--max-new-tokens", "2", "--device", "cpu"], input=script,
                           cwd=corpus.cwd, env=offline_env(), capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        TALLY["hangs"] += 1
        raise
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-3000:]
    assert r.returncode == 0, r.stderr[-3000:]
    assert "bomb.png: too large to decode" in r.stdout and "symlink_loop.png: symlink loop" in r.stdout
    assert "ASSISTANT: " in r.stdout.split("Hello", 1)[1]
    TALLY["clean errors"] += 2


def _check_data(corpus, case: str, data: Path, *extra) -> list:
    return ["llava", "check-data", "--config", corpus.configs["base.yaml"], "--model_name_or_path", corpus.llava,
            "--data_path", data, "--image_folder", corpus.images, "--output_dir", _out(corpus, case),
            "--workers", "1", *extra]


def test_check_data_counts_bad_images_and_keeps_odd_ones(corpus, run):
    report = _out(corpus, "images") / "report.json"
    r = run(_check_data(corpus, "images", corpus.data["images.json"], "--report", report))
    assert r.rc == 0, r.err[-2000:]
    rep = json.loads(report.read_text())
    expected = Counter(bi.BAD_IMAGES.values())
    assert rep["bad"] == dict(expected), rep
    for name, reason in bi.BAD_IMAGES.items():
        assert name in rep["first_ids"][reason], (name, rep["first_ids"])
    assert rep["kept"] == len(bi.ODD_IMAGES)
    TALLY["counted skips"] += len(bi.BAD_IMAGES)
    TALLY["accepted"] += len(bi.ODD_IMAGES)
    TALLY["inputs"] += len(bi.BAD_IMAGES) + len(bi.ODD_IMAGES) - 1


# --- data JSON ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(bi.UNREADABLE_DATA))
def test_check_data_unreadable_json(corpus, run, name):
    path = corpus.data[name]
    r = run(_check_data(corpus, f"data-{name}", path))
    needle = "not found" if name == "missing.json" else bi.UNREADABLE_DATA[name]
    expect_error(r, "clips-llava llava check-data", path, needle)


def test_check_data_directory_as_data_path(corpus, run):
    r = run(_check_data(corpus, "data-dir", corpus.inp / "data"))
    expect_error(r, "clips-llava llava check-data", corpus.inp / "data", "not a file")


def test_check_data_bom_is_accepted(corpus, run):
    r = run(_check_data(corpus, "data-bom", corpus.data["bom.json"]))
    assert r.rc == 0 and "4 records, 4 kept, 0 bad" in r.out, r.out + r.err[-2000:]
    TALLY["accepted"] += 1


def test_check_data_wrong_types_are_counted_skips(corpus, run):
    report = _out(corpus, "data-types") / "report.json"
    r = run(_check_data(corpus, "data-types", corpus.data["wrong_types.json"], "--report", report))
    assert r.rc == 0, r.err[-2000:]
    rep = json.loads(report.read_text())
    assert rep["bad"] == bi.WRONG_TYPE_REASONS and rep["kept"] == 4, rep
    n = sum(bi.WRONG_TYPE_REASONS.values())
    TALLY["counted skips"] += n
    TALLY["inputs"] += n - 1


def _train(corpus, case: str, *extra, data: Path | None = None, config: Path | None = None,
           out: Path | None = None) -> list:
    return ["llava", "train", "--config", config or corpus.configs["base.yaml"],
            "--data_path", data or corpus.tiny_world / "llava/stage1.json", "--image_folder", corpus.images,
            "--output_dir", out or _out(corpus, case), *extra]


def test_train_empty_dataset_after_skips(corpus, run):
    data = corpus.data["all_bad.json"]
    r = run(_train(corpus, "all-bad", "--model_name_or_path", corpus.llava, "--max_bad_sample_fraction", "1.0",
                   data=data))
    expect_error(r, "clips-llava llava train", data, "none of its 8 records is usable", "bad_record=5")


def test_train_bad_fraction_stop_is_one_line(corpus, run):
    data = corpus.data["wrong_types.json"]
    r = run(_train(corpus, "fraction", "--model_name_or_path", corpus.llava, data=data))
    expect_error(r, "clips-llava llava train", data, "more than max_bad_sample_fraction=0.01")


# --- configs -----------------------------------------------------------------------------------

def _train_config_cases(c):
    lm = ["--model_name_or_path", c.llava]
    files = c.files
    return {
        "unknown key": (_train(c, "cfg1", *lm, config=c.configs["unknown_key.yaml"]), [c.configs["unknown_key.yaml"], "no_such_field"]),
        "wrong type": (_train(c, "cfg2", *lm, config=c.configs["wrong_type.yaml"]), [c.configs["wrong_type.yaml"], "lora_r", "invalid int"]),
        "malformed YAML": (_train(c, "cfg3", *lm, config=files["malformed.yaml"]), [files["malformed.yaml"], "not valid YAML"]),
        "YAML list": (_train(c, "cfg4", *lm, config=files["list.yaml"]), [files["list.yaml"], "expected a mapping"]),
        "non-UTF-8 YAML": (_train(c, "cfg5", *lm, config=files["non_utf8.yaml"]), [files["non_utf8.yaml"], "not UTF-8"]),
        "missing config": (_train(c, "cfg6", *lm, config=c.inp / "nope.yaml"), ["nope.yaml", "config not found"]),
        "config without a file": (["llava", "train", "--config"], ["--config needs a YAML file"]),
        "CLI wrong type": (_train(c, "cfg7", *lm, "--max_steps", "abc"), ["max_steps", "invalid int value: 'abc'"]),
        "CLI unknown field": (_train(c, "cfg8", *lm, "--no_such_flag", "1"), ["no_such_flag", "on the command line"]),
        "CLI bad bool": (_train(c, "cfg9", *lm, "--packing", "maybe"), ["packing", "maybe"]),
        "output dir is a file": (_train(c, "cfg10", *lm, out=files["a_file"]), [files["a_file"], "is a file"]),
        "unknown stage": (_train(c, "cfg11", *lm, "--stage", "nope"), ["unknown stage 'nope'"]),
        "unknown template": (_train(c, "cfg12", *lm, "--template", "nope"), ["template 'nope'"]),
        "unknown aspect ratio": (_train(c, "cfg13", *lm, "--image_aspect_ratio", "nope"), ["image_aspect_ratio 'nope'"]),
        "image folder missing": (_train(c, "cfg14", *lm, "--image_folder", c.inp / "no_images"), ["no_images", "not found"]),
        "image folder is a file": (_train(c, "cfg15", *lm, "--image_folder", files["a_file"]), [files["a_file"], "not a directory"]),
    }


TRAIN_CONFIG_CASES = [
    "unknown key", "wrong type", "malformed YAML", "YAML list", "non-UTF-8 YAML", "missing config",
    "config without a file", "CLI wrong type", "CLI unknown field", "CLI bad bool", "output dir is a file",
    "unknown stage", "unknown template", "unknown aspect ratio", "image folder missing", "image folder is a file",
]


@pytest.mark.parametrize("case", TRAIN_CONFIG_CASES)
def test_llava_train_config(corpus, run, case):
    argv, needles = _train_config_cases(corpus)[case]
    expect_error(run(argv), "clips-llava llava train", *needles)


@pytest.mark.parametrize("name", list(bi.CLIPS_CONFIGS))
def test_clips_train_config(corpus, run, name):
    path = corpus.clips_configs[name]
    r = run(["clips", "train", "--config", path, "--data", corpus.tiny_world, "--out", _out(corpus, f"clips-{name}"),
             "--steps", "1"])
    needle = bi.CLIPS_CONFIGS[name][1]
    expect_error(r, "clips-llava clips train", path if "model_" not in name else "arch", needle)


@pytest.mark.parametrize("case", ["missing config", "out is a file", "no shards"])
def test_clips_train_paths(corpus, run, case):
    cfg, data, out = REPO / "configs/clips/tiny.yaml", corpus.tiny_world, _out(corpus, "clips-paths")
    needles = {"missing config": [corpus.inp / "nope.yaml", "not found"], "out is a file": [corpus.files["a_file"], "is a file"],
               "no shards": [corpus.inp / "no_data", "no webdataset shards"]}[case]
    if case == "missing config":
        cfg = corpus.inp / "nope.yaml"
    elif case == "out is a file":
        out = corpus.files["a_file"]
    else:
        data = corpus.inp / "no_data"
    r = run(["clips", "train", "--config", cfg, "--data", data, "--out", out, "--steps", "1"])
    expect_error(r, "clips-llava clips train", *needles)


# --- model directories -------------------------------------------------------------------------

MODEL_PROBLEMS = {  # damaged dir -> a piece of the error (the file or dir is checked separately)
    "truncated_weights": "truncated safetensors file",
    "truncated_header": "truncated safetensors file",
    "corrupt_weights": "corrupt header",
    "zero_byte_weights": "0 bytes",
    "no_weights": "no Llava model weights",
    "no_tokenizer": "no tokenizer files",
    "no_processor": "no image processor",
    "config_malformed": "config.json",
    "config_list": "expected a JSON object",
    "empty_dir": "no config.json",
}


@pytest.mark.parametrize("name", list(MODEL_PROBLEMS))
def test_chat_bad_model_dir(corpus, run, name):
    d = corpus.models[name]
    expect_error(run(["chat", "--model", d, *ONE_SHOT]), "clips-llava chat", d, MODEL_PROBLEMS[name])


@pytest.mark.parametrize("case", ["not a llava", "missing dir", "truncated adapter"])
def test_chat_other_models(corpus, run, case):
    argv, needles = {
        "not a llava": (["--model", corpus.lm], [corpus.lm, "not a Llava model directory", "llama"]),
        "missing dir": (["--model", corpus.inp / "no_model"], ["no_model", "not found"]),
        "truncated adapter": (["--model", corpus.lora_truncated, "--base", corpus.llava],
                              [corpus.lora_truncated / "adapter_model.safetensors", "truncated"]),
    }[case]
    expect_error(run(["chat", *argv, *ONE_SHOT]), "clips-llava chat", *needles)


EVAL_PROBLEMS = {**MODEL_PROBLEMS, "no_weights": "no Llava model weights", "config_malformed": "malformed JSON"}


@pytest.mark.parametrize("name", [n for n in MODEL_PROBLEMS if n != "empty_dir"] + ["language_model", "missing", "out_is_file"])
def test_eval_run_bad_model_dir(corpus, run, name):
    d = {"language_model": corpus.lm, "missing": corpus.inp / "no_model"}.get(name) or corpus.models.get(name, corpus.llava)
    out = corpus.files["a_file"] if name == "out_is_file" else _out(corpus, f"eval-{name}")
    r = run(["eval", "run", "--model", d, "--suite", "local", "--data", corpus.tiny_world, "--out", out,
             "--limit", "1", "--device", "cpu"])
    needle = {"language_model": "not a Llava model directory", "missing": "not found", "out_is_file": "is a file",
              }.get(name) or EVAL_PROBLEMS[name]
    expect_error(r, "clips-llava eval run", out if name == "out_is_file" else d, needle)


def test_eval_report_malformed_results(corpus, run):
    r = run(["eval", "report", "--run", f"a={corpus.inp / 'eval_run'}", "--baseline", "a", "--out", _out(corpus, "report")])
    expect_error(r, "clips-llava eval report", corpus.results, "malformed JSON")


def test_eval_prepare_counts_a_corrupt_image(corpus, run):
    r = run(["eval", "prepare", "--data", corpus.world, "--out", _out(corpus, "prepare"), "--tasks", "synth_pope"])
    assert r.rc == 0 and f"skipped {corpus.pope_skips} unusable row(s)" in r.out, r.out + r.err[-2000:]
    TALLY["counted skips"] += corpus.pope_skips
    TALLY["inputs"] += corpus.pope_skips - 1


@pytest.mark.parametrize("case", ["truncated LM", "truncated llava", "missing model", "no tokenizer", "no processor",
                                  "config list", "truncated tower", "tower without processor", "missing projector",
                                  "truncated projector"])
def test_llava_train_model_dirs(corpus, run, case):
    m = corpus.models
    model, extra, needles = {
        "truncated LM": (corpus.lm_truncated, ["--vision_tower", corpus.llava], [corpus.lm_truncated / "model.safetensors", "truncated"]),
        "truncated llava": (m["truncated_weights"], [], [m["truncated_weights"] / "model.safetensors", "truncated"]),
        "missing model": (corpus.inp / "no_model", [], ["no_model", "not found"]),
        "no tokenizer": (m["no_tokenizer"], [], [m["no_tokenizer"], "no tokenizer files"]),
        "no processor": (m["no_processor"], [], [m["no_processor"], "no image processor"]),
        "config list": (m["config_list"], [], [m["config_list"] / "config.json", "expected a JSON object"]),
        "truncated tower": (corpus.lm, ["--vision_tower", m["truncated_weights"]], [m["truncated_weights"], "truncated"]),
        "tower without processor": (corpus.lm, ["--vision_tower", m["no_processor"]], [m["no_processor"], "no image processor"]),
        "missing projector": (corpus.lm, ["--vision_tower", corpus.llava, "--pretrain_mm_mlp_adapter", corpus.inp / "no.bin"],
                              ["no.bin", "not found"]),
        "truncated projector": (corpus.lm, ["--vision_tower", corpus.llava, "--pretrain_mm_mlp_adapter", corpus.projector_st],
                                [corpus.projector_st, "truncated"]),
    }[case]
    r = run(_train(corpus, f"model-{case}", "--model_name_or_path", model, *extra))
    expect_error(r, "clips-llava llava train", *needles)


@pytest.mark.parametrize("case", ["truncated adapter", "no adapter_config", "no base in config", "base not a llava",
                                  "truncated base", "out is a file", "missing adapter"])
def test_merge_lora(corpus, run, case):
    c = corpus
    argv, needles = {
        "truncated adapter": (["--model", c.lora_truncated, "--base", c.llava], [c.lora_truncated, "truncated"]),
        "no adapter_config": (["--model", c.models["empty_dir"], "--base", c.llava], [c.models["empty_dir"], "adapter_config.json"]),
        "no base in config": (["--model", c.lora_no_base], [c.lora_no_base, "base_model_name_or_path"]),
        "base not a llava": (["--model", c.lora, "--base", c.lm], [c.lm, "not a Llava model directory"]),
        "truncated base": (["--model", c.lora, "--base", c.models["truncated_weights"]], [c.models["truncated_weights"], "truncated"]),
        "out is a file": (["--model", c.lora, "--base", c.llava], [c.files["a_file"], "is a file"]),
        "missing adapter": (["--model", c.inp / "no_adapter", "--base", c.llava], ["no_adapter", "not found"]),
    }[case]
    out = c.files["a_file"] if case == "out is a file" else _out(c, f"merge-{case}")
    expect_error(run(["llava", "merge-lora", *argv, "--out", out]), "clips-llava llava merge-lora", *needles)


@pytest.mark.parametrize("case", ["corrupt bin", "truncated safetensors", "missing"])
def test_projector(corpus, run, case):
    src, needle = {"corrupt bin": (corpus.projector_bin, "not a readable torch weights file"),
                   "truncated safetensors": (corpus.projector_st, "truncated"),
                   "missing": (corpus.inp / "no_projector.bin", "not found")}[case]
    r = run(["llava", "projector", "export", "--model", src, "--out", _out(corpus, "projector") / "p.safetensors"])
    expect_error(r, "clips-llava llava projector", src, needle)


@pytest.mark.parametrize("case", ["export corrupt weights", "export config list", "export malformed arch",
                                  "export out is a file", "check truncated", "check tower_info malformed", "check missing"])
def test_tower(corpus, run, case):
    c, arch = corpus, REPO / "configs/clips/models/tiny.json"
    argv, needles = {
        "export corrupt weights": (["export", "--model", c.open_clip_corrupt, "--out", _out(c, "tower1")],
                                   [c.open_clip_corrupt / "open_clip_model.safetensors", "not a valid safetensors"]),
        "export config list": (["export", "--model", c.open_clip_list, "--out", _out(c, "tower2")],
                               [c.open_clip_list / "open_clip_config.json", "not a valid open_clip config"]),
        "export malformed arch": (["export", "--model", c.clips_configs["model_malformed.yaml"].parent / "arch_malformed.json",
                                   "--random-init", "--out", _out(c, "tower3")], ["arch_malformed.json", "not valid JSON"]),
        "export out is a file": (["export", "--model", arch, "--random-init", "--out", c.files["a_file"]], [c.files["a_file"], "is a file"]),
        "check truncated": (["check", "--model", arch, "--random-init", "--out", c.models["truncated_weights"]],
                            [c.models["truncated_weights"] / "model.safetensors", "truncated"]),
        "check tower_info malformed": (["check", "--model", arch, "--random-init", "--out", c.tower_info_bad],
                                       [c.tower_info_bad / "tower_info.json", "malformed JSON"]),
        "check missing": (["check", "--model", arch, "--random-init", "--out", c.inp / "no_tower"], ["no_tower", "no config.json"]),
    }[case]
    expect_error(run(["tower", *argv]), f"clips-llava tower {argv[0]}", *needles)


@pytest.mark.parametrize("case", ["corrupt weights", "config list", "malformed retrieval JSON", "retrieval wrong types"])
def test_clips_eval(corpus, run, case):
    c = corpus
    model, data, needles = {
        "corrupt weights": (c.open_clip_corrupt, c.tiny_world, [c.open_clip_corrupt / "open_clip_model.safetensors"]),
        "config list": (c.open_clip_list, c.tiny_world, [c.open_clip_list / "open_clip_config.json", "expected a JSON object"]),
        "malformed retrieval JSON": (c.open_clip_corrupt, c.data["malformed.json"], [c.data["malformed.json"], "malformed JSON"]),
        "retrieval wrong types": (c.open_clip_corrupt, c.retrieval_bad, [c.retrieval_bad, "images[0]"]),
    }[case]
    expect_error(run(["clips", "eval", "--model", model, "--data", data]), "clips-llava clips eval", *needles)


@pytest.mark.parametrize("case", ["pretrain truncated model", "pretrain non-UTF-8 corpus", "init non-UTF-8 corpus",
                                  "init out is a file", "init missing corpus"])
def test_lm(corpus, run, case):
    c, bad_corpus = corpus, corpus.files["non_utf8.txt"]
    argv, needles = {
        "pretrain truncated model": (["pretrain", "--model", c.lm_truncated, "--data", c.tiny_world, "--out", _out(c, "lm1")],
                                     [c.lm_truncated / "model.safetensors", "truncated"]),
        "pretrain non-UTF-8 corpus": (["pretrain", "--model", c.lm, "--data", bad_corpus, "--out", _out(c, "lm2")],
                                      [bad_corpus, "not UTF-8"]),
        "init non-UTF-8 corpus": (["init", "--data", bad_corpus, "--out", _out(c, "lm3")], [bad_corpus, "not UTF-8"]),
        "init out is a file": (["init", "--data", c.tiny_world, "--out", c.files["a_file"]], [c.files["a_file"], "is a file"]),
        "init missing corpus": (["init", "--data", c.inp / "no_corpus", "--out", _out(c, "lm4")], ["no_corpus", "no corpus"]),
    }[case]
    expect_error(run(["lm", *argv]), f"clips-llava lm {argv[0]}", *needles)


@pytest.mark.parametrize("cmd", ["synth", "demo"])
def test_out_is_a_file(corpus, run, cmd):
    a_file = corpus.files["a_file"]
    expect_error(run([cmd, "--out", a_file, "--preset", "tiny"]), f"clips-llava {cmd}", a_file)


# --- --debug, and the stage scripts ------------------------------------------------------------

def test_debug_shows_the_traceback(corpus, monkeypatch):
    from llava_train.chat.session import ChatInputError

    monkeypatch.setenv("CLIPS_LLAVA_DEBUG", "0")  # recorded, so that what --debug sets is undone after the test
    with pytest.raises(ChatInputError, match="truncated"):
        cli.main(["--debug", "chat", "--model", str(corpus.models["truncated_weights"]), *ONE_SHOT])
    monkeypatch.setenv("CLIPS_LLAVA_DEBUG", "1")
    with pytest.raises(ValueError, match="not valid YAML"):
        cli.main(["llava", "train", "--config", str(corpus.files["malformed.yaml"])])


def test_stage_script_bad_config_is_one_line(corpus):
    """`scripts/pretrain_projector.sh` -> launcher -> `python -m llava_train.train`: the worker's one line, exit 2."""
    TALLY["inputs"] += 1
    cfg = corpus.files["non_utf8.yaml"]
    try:
        r = subprocess.run([str(REPO / "scripts/pretrain_projector.sh"), "--config", str(cfg),
                            "--output_dir", str(_out(corpus, "stage"))], cwd=corpus.cwd, capture_output=True,
                           text=True, timeout=240, env=offline_env(NPROC="1", LAUNCHER="torchrun", PY=sys.executable))
    except subprocess.TimeoutExpired:
        TALLY["hangs"] += 1
        raise
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-4000:]
    assert r.returncode == 2, r.stderr[-4000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("clips-llava llava train: error: ")]
    assert len(lines) == 1 and str(cfg) in lines[0] and "not UTF-8" in lines[0], r.stderr[-4000:]
    assert not any(corpus.cwd.iterdir())
    TALLY["clean errors"] += 1
