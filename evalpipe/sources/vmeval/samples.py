"""Deterministic VMEvalKit data roots with every quirk of the real files, and a hostile one.

Quirks written on purpose (each is valid upstream, and must validate clean): domains with
underscores (`mirror_clock`, `arc_agi_2`), an HF-style domain with a null `final_image_path`
and no difficulty, top-level maze fields, sudoku blanks as `null`, ASCII-escaped JSON next to a
raw UTF-8 prompt.txt without a trailing newline, local time labelled `Z`, absolute image paths
in outputs, both output layouts (run folders with metadata, flat `video/video.mp4`), a task run
twice, skipped evaluations, a score of 0, and an `_all_models.json` aggregate. The hostile root
injects each validation error code exactly once (see `HOSTILE_FAULTS`).
"""

from __future__ import annotations

import json
import os
import random
import struct
import zlib
from pathlib import Path

from evalpipe.sources.vmeval.layout import MANIFEST

DOMAINS = ("chess", "maze", "sudoku", "mirror_clock", "arc_agi_2")
MODELS = (("pilot", "luma-ray-2"), (None, "veo-3"))
"""(experiment, model): luma in run folders under an experiment, veo in the flat layout."""
EXPERIMENT = "pilot"
EVALUATORS = (("human-eval", "human-eval"), ("gpt4o-eval", "GPT4OEvaluator"))
HOSTILE_FAULTS = {
    "invalid_json": "questions/maze_task/maze_0000/question_metadata.json",
    "missing_key": "evaluations/human-eval/pilot/luma-ray-2/chess_task/chess_0001/human-eval.json",
    "missing_file": "questions/chess_task/chess_0002/question_metadata.json",
    "path_escape": "questions/sudoku_task/sudoku_0000/prompt.txt",
    "duplicate_id": "questions/vmeval_dataset.json",
    "id_mismatch": "evaluations/gpt4o-eval/pilot/luma-ray-2/maze_task/maze_0001/"
    "GPT4OEvaluator.json",
    "manifest_mismatch": "questions/sudoku_task/sudoku_0001/question_metadata.json",
    "count_mismatch": "questions/vmeval_dataset.json",
    "bad_image": "questions/mirror_clock_task/mirror_clock_0000/final_frame.png",
    "prompt_mismatch": "questions/mirror_clock_task/mirror_clock_0001/prompt.txt",
    "invalid_score": "evaluations/gpt4o-eval/pilot/veo-3/sudoku_task/sudoku_0002/"
    "GPT4OEvaluator.json",
}
"""Each error code the hostile root holds once, and the path `evalpipe validate` names."""
HOSTILE_WARNINGS = {
    "orphan_folder": "questions/chess_task/chess_0900",
    "orphan_output": "outputs/pilot/luma-ray-2/chess_task/chess_0999",
}


def png_bytes(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid solid-colour PNG (signature, IHDR, IDAT, IEND with their CRCs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def mp4_bytes(seed: int) -> bytes:
    """Bytes shaped like an MP4 (an `ftyp` box, then an `mdat` box of filler)."""
    filler = bytes((seed + i) % 251 for i in range(256))
    return (
        struct.pack(">I", 24)
        + b"ftypisom"
        + b"\x00" * 12
        + struct.pack(">I", 264)
        + b"mdat"
        + filler
    )


def generate_datasets(
    out: Path, datasets: int = 2, questions: int = 4, seed: int = 0, hostile: bool = False
) -> list[Path]:
    """Write `datasets` clean data roots (`lab<i>/v1`) of `questions` per domain, plus a
    hostile one (`hostile`) if asked; return the data roots."""
    if datasets < 0 or questions < 3:
        raise ValueError("need datasets >= 0 and questions >= 3 per domain")
    roots = []
    for index in range(datasets):
        root = out / f"lab{index}" / "v1"
        _write_data_root(root, questions, random.Random(seed * 1000 + index))
        roots.append(root)
    if hostile:
        root = out / "hostile"
        _write_data_root(root, questions, random.Random(seed * 1000 + 999))
        _inject_faults(root)
        roots.append(root)
    return roots


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))


def _question(domain: str, index: int, rng: random.Random) -> dict:
    """One question's metadata in its domain's real shape."""
    question_id = f"{domain}_{index:04d}"
    folder = f"{domain}_task/{question_id}"
    created = f"2025-10-15T22:14:{index % 60:02d}.{rng.randrange(10**6):06d}Z"
    base = {
        "id": question_id,
        "prompt": f"Solve {domain} puzzle {index}: show the final state at 38\u00b0.",
        "first_image_path": f"{folder}/first_frame.png",
        "final_image_path": f"{folder}/final_frame.png",
    }
    difficulty = rng.choice(["easy", "medium", "hard"])
    if domain == "chess":
        fen = f"{index % 8 + 1}k5/8/8/8/8/8/8/R6K w - - 0 1"
        return {
            **base,
            "task_category": "Chess",
            "chess_data": {
                "generation_method": "mate_in_1_templates",
                "initial_fen": fen,
                "mate_moves": ["Ra8#"],
                "pattern_tags": ["back_rank", "rook"],
            },
            "difficulty": difficulty,
            "side_to_move": "white",
            "mate_moves": ["Ra8#"],
            "created_at": created,
            "domain": domain,
        }
    if domain == "maze":
        length = rng.randint(2, 9)
        return {
            **base,
            "task_category": "Maze",
            "maze_data": {"generation_method": "kruskal_algorithm", "solution_length": length},
            "difficulty": difficulty,
            "maze_size": [3, 3],
            "start_pos": [0, rng.randint(0, 2)],
            "end_pos": [2, rng.randint(0, 2)],
            "solution_length": length,
            "created_at": created,
            "domain": domain,
        }
    if domain == "sudoku":
        solution = [3, 1, 2, 1, 2, 3, 2, 3, 1]
        puzzle = [None if i == index % 9 else v for i, v in enumerate(solution)]
        return {
            **base,
            "task_category": "Sudoku",
            "difficulty": difficulty,
            "sudoku_data": {
                "puzzle": puzzle,
                "solution": solution,
                "difficulty_level": 2,
                "num_given": 8,
            },
            "puzzle_array": puzzle,
            "solution_array": solution,
            "num_given": 8,
            "created_at": created,
            "domain": domain,
        }
    if domain == "mirror_clock":
        hours = index % 12
        return {
            **base,
            "domain": domain,
            "task_category": "Spatial Reasoning",
            "difficulty": difficulty,
            "mirror_clock_data": {
                "original_time": {"hours": hours, "minutes": 0, "formatted": f"{hours}:00"},
                "time_delta": {"hours": 2, "minutes": 0, "formatted": "2 hours"},
                "future_time": {"hours": hours + 2, "minutes": 0, "formatted": f"{hours + 2}:00"},
                "difficulty": difficulty,
                "task_type": "mirror_with_future_prediction",
            },
            "created_at": created,
        }
    # An HF-downloaded domain: smaller object, no final frame, no difficulty or category.
    return {
        "id": question_id,
        "domain": domain,
        "prompt": base["prompt"],
        "first_image_path": base["first_image_path"],
        "final_image_path": None,
        "created_at": created,
        "source": "huggingface",
        "subset": "public_eval",
    }


def _write_data_root(root: Path, per_domain: int, rng: random.Random) -> None:
    questions = root / "questions"
    pairs = []
    for domain in DOMAINS:
        for index in range(per_domain):
            meta = _question(domain, index, rng)
            _write_question(questions, meta, rng)
            pairs.append(meta)
    rng.shuffle(pairs)
    counts = {d: per_domain for d in DOMAINS}
    _write_json(
        questions / MANIFEST,
        {
            "name": "vmeval_dataset",
            "description": f"VMEvalKit video reasoning evaluation dataset ({len(pairs)} task pairs)",
            "created_at": "2025-10-15T22:14:43.000000Z",
            "total_pairs": len(pairs),
            "generation_info": {
                "timestamp": "2025-10-15T22:14:43.000000",
                "random_seed": 42,
                "pairs_per_domain": per_domain,
                "target_pairs": len(pairs),
                "actual_pairs": len(pairs),
                "allocation": counts,
                "domains": {
                    d: {"count": n, "description": f"{d} tasks"} for d, n in counts.items()
                },
            },
            "pairs": pairs,
        },
    )
    _write_outputs(root, pairs, rng)
    _write_evaluations(root, pairs, rng)


def _write_question(questions: Path, meta: dict, rng: random.Random) -> None:
    folder = questions / Path(meta["first_image_path"]).parent
    folder.mkdir(parents=True, exist_ok=True)
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    (folder / "first_frame.png").write_bytes(png_bytes(8, 8, colour))
    if meta["final_image_path"] is not None:
        (folder / "final_frame.png").write_bytes(png_bytes(8, 8, colour[::-1]))
    (folder / "prompt.txt").write_bytes(meta["prompt"].encode("utf-8"))
    _write_json(folder / "question_metadata.json", meta)


def _write_outputs(root: Path, pairs: list[dict], rng: random.Random) -> None:
    questions = (root / "questions").resolve()
    for experiment, model in MODELS:
        for n, meta in enumerate(sorted(pairs, key=lambda p: p["id"])):
            task = f"{meta['domain']}_task/{meta['id']}"
            if experiment is None:
                folder = root / "outputs" / model / task
                (folder / "video").mkdir(parents=True, exist_ok=True)
                (folder / "video" / "video.mp4").write_bytes(mp4_bytes(n))
                _write_output_question(folder / "question", meta, questions)
                continue
            stamps = ["20251016_101500"] + (["20251017_090000"] if n == 0 else [])
            for stamp in stamps:
                run_id = f"{model}_{meta['id']}_{stamp}"
                run = root / "outputs" / experiment / model / task / run_id
                generation = f"{rng.getrandbits(32):08x}"
                video = run / "video" / f"luma_{generation}.mp4"
                video.parent.mkdir(parents=True, exist_ok=True)
                video.write_bytes(mp4_bytes(n))
                question_data = _write_output_question(run / "question", meta, questions)
                ts = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:00"
                _write_json(
                    run / "metadata.json",
                    {
                        "inference": {
                            "run_id": run_id,
                            "model": model,
                            "timestamp": ts,
                            "status": "success",
                            "duration_seconds": round(20 + rng.random() * 40, 2),
                        },
                        "input": {
                            "prompt": meta["prompt"],
                            "image_path": question_data["first_image_path"],
                            "question_id": meta["id"],
                            "task_category": meta.get("task_category", meta["domain"]),
                        },
                        "output": {"video_path": str(video.resolve()), "generation_id": generation},
                        "paths": {"inference_dir": str(run.resolve())},
                        "question_data": question_data,
                    },
                )


def _write_output_question(folder: Path, meta: dict, questions: Path) -> dict:
    """The run's copy of the question; its image paths are ABSOLUTE, as generate_videos.py
    writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    absolute = {
        **meta,
        "first_image_path": str(questions / meta["first_image_path"]),
        "final_image_path": str(questions / meta["final_image_path"])
        if meta["final_image_path"]
        else None,
    }
    (folder / "prompt.txt").write_bytes(meta["prompt"].encode("utf-8"))
    _write_json(folder / "question_metadata.json", absolute)
    return {k: v for k, v in absolute.items() if v is not None}


def _write_evaluations(root: Path, pairs: list[dict], rng: random.Random) -> None:
    for evaluator_dir, name in EVALUATORS:
        aggregate: dict = {}
        for _, model in MODELS:
            for meta in sorted(pairs, key=lambda p: p["id"]):
                task_type = f"{meta['domain']}_task"
                metadata = {
                    "evaluator": name,
                    "timestamp": "2025-10-18T12:00:00.000000",
                    "model_name": model,
                    "task_type": task_type,
                    "task_id": meta["id"],
                }
                roll = rng.random()
                if evaluator_dir == "human-eval":
                    metadata["annotator"] = rng.choice(["alice", "bob"])
                    result = {"solution_correctness_score": rng.randint(1, 5), "comments": "ok"}
                elif roll < 0.15:
                    result = {"error": "no final frame to compare", "status": "skipped"}
                else:
                    score = 0 if roll < 0.2 else rng.randint(1, 5)
                    result = {
                        "solution_correctness_score": score,
                        "explanation": "compared final frames",
                        "evaluation_type": "final_frame_comparison",
                        "status": "completed",
                    }
                folder = root / "evaluations" / evaluator_dir / EXPERIMENT / model / task_type
                _write_json(
                    folder / meta["id"] / f"{name}.json", {"metadata": metadata, "result": result}
                )
                aggregate.setdefault(model, {}).setdefault(task_type, {})[meta["id"]] = result
        _write_json(
            root / "evaluations" / evaluator_dir / EXPERIMENT / f"{name}_all_models.json",
            {"metadata": {"evaluator": name}, "results": aggregate},
        )


def _inject_faults(root: Path) -> None:
    """Each error code of `HOSTILE_FAULTS` once, plus the warnings of `HOSTILE_WARNINGS`."""
    paths = {code: root / rel for code, rel in {**HOSTILE_FAULTS, **HOSTILE_WARNINGS}.items()}
    text = paths["invalid_json"].read_text()
    paths["invalid_json"].write_text(text[: len(text) // 2])
    evaluation = json.loads(paths["missing_key"].read_text())
    _write_json(paths["missing_key"], {"metadata": evaluation["metadata"]})
    (paths["missing_file"].parent / "first_frame.png").unlink()
    paths["path_escape"].unlink()
    os.symlink("/etc/hostname", paths["path_escape"])
    manifest_path = root / HOSTILE_FAULTS["duplicate_id"]
    manifest = json.loads(manifest_path.read_text())
    manifest["pairs"].append(dict(manifest["pairs"][0]))
    manifest["total_pairs"] = manifest["generation_info"]["actual_pairs"] = len(manifest["pairs"])
    manifest["generation_info"]["allocation"]["maze"] += 1
    _write_json(manifest_path, manifest)
    evaluation = json.loads(paths["id_mismatch"].read_text())
    evaluation["metadata"]["task_id"] = "maze_0002"
    _write_json(paths["id_mismatch"], evaluation)
    meta = json.loads(paths["manifest_mismatch"].read_text())
    meta["difficulty"] = "impossible"
    _write_json(paths["manifest_mismatch"], meta)
    paths["bad_image"].write_bytes(paths["bad_image"].read_bytes()[:40])
    paths["prompt_mismatch"].write_text("A different prompt.", encoding="utf-8")
    evaluation = json.loads(paths["invalid_score"].read_text())
    evaluation["result"] = {"solution_correctness_score": 7, "status": "completed"}
    _write_json(paths["invalid_score"], evaluation)
    orphan = _question("chess", 900, random.Random(900))
    _write_question(root / "questions", orphan, random.Random(900))
    video = paths["orphan_output"] / "luma-ray-2_chess_0999_20251016_101500" / "video" / "v.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(mp4_bytes(0))
    (video.parent.parent / "question").mkdir()
    _write_json(video.parent.parent / "metadata.json", {"inference": {"status": "success"}})
