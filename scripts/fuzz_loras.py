"""Nightly fuzz run of the LoRA readers: many seeded hostile files through `lora inspect`'s reader and the patcher.

    python scripts/fuzz_loras.py                         # 20,000 cases from seed 1, plus the library scan
    python scripts/fuzz_loras.py --cases 100000 --seed 7 --keep /tmp/fuzz-failures

The same generator as the CI test (``tests/helpers/fuzz_cases.py``: byte flips, truncation, lying lengths and offsets,
overlapping tensors, other dtypes/shapes, NaN/Inf, deep JSON, huge tensor counts, text files, bad alphas, markup in
metadata) over the seed files of every merged format. Each case is read with ``inspect_lora`` and, when accepted,
merged with ``LoraPatcher.apply`` on a tiny model and restored. Failures: an exception that is not a LoradeckError,
an error on several lines or not naming the file, a refused merge that changed the model, a restore that is not
bit-exact, or a case over ``--case-seconds``. Every ``--scan-every`` cases the current batch of files is also
scanned as a library folder (the scan must list each file as a LoRA or as unreadable).

Prints one JSON line per ``--report-every`` cases and a final JSON summary; exits 1 when anything failed.
Run from the repository root with ``PYTHONPATH=src``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.helpers

from tests.helpers.fuzz_cases import check_case, mutated_files, snapshot, tiny_model  # noqa: E402


def _scan(folder: Path, cache: Path) -> str | None:
    """None when the library scan lists every .safetensors in ``folder`` as an entry or an unreadable file."""
    from loradeck.library import Library

    files = {p for p in folder.glob("case*.safetensors")}
    try:
        library = Library(folder, cache / "ckpt", cache / "index")
        report = library.scan()
    except Exception as e:  # the point of the check
        return f"library scan raised {type(e).__name__}: {e}"
    seen = {e.path for e in library.loras()} | {e.path for e in report.errors}
    missing = files - seen
    return f"the scan lost {len(missing)} files, e.g. {sorted(missing)[0].name}" if missing else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--case-seconds", type=float, default=2.0)
    ap.add_argument("--scan-every", type=int, default=500)
    ap.add_argument("--report-every", type=int, default=1000)
    ap.add_argument("--keep", type=Path, help="copy failing files here")
    args = ap.parse_args()

    comps, keymap = tiny_model()
    base = snapshot(comps)
    counts: Counter[str] = Counter()
    failures: list[dict] = []
    worst = 0.0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = Path(tmp) / "cases", Path(tmp) / "cache"
        folder.mkdir()
        for i, (path, kind) in enumerate(mutated_files(folder, args.cases, seed=args.seed), 1):
            outcome, problem, seconds = check_case(path, comps, keymap, base)
            counts[outcome] += 1
            if problem is None and seconds > args.case_seconds:  # a real hang repeats, a machine stall does not
                seconds = min(seconds, check_case(path, comps, keymap, base)[2])
                problem = f"took {seconds:.1f} s (twice)" if seconds > args.case_seconds else None
            worst = max(worst, seconds)
            if problem:
                failures.append({"file": path.name, "mutation": kind, "problem": problem})
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, args.keep / path.name)
            if kind == "many_tensors":
                path.unlink()  # multi-MB headers: checked alone, not kept for the batch scan
            if i % args.scan_every == 0:
                problem = _scan(folder, cache)
                if problem:
                    failures.append({"file": f"batch ending at case {i}", "mutation": "scan", "problem": problem})
                for p in folder.glob("case*"):
                    p.unlink()
            if i % args.report_every == 0:
                print(json.dumps({"cases": i, **counts, "failures": len(failures), "worst_s": round(worst, 3)}))
    summary = {
        "cases": args.cases,
        "seed": args.seed,
        **counts,
        "failures": len(failures),
        "worst_case_s": round(worst, 3),
        "total_s": round(time.perf_counter() - t0, 1),
        "first_failures": failures[:20],
    }
    print(json.dumps(summary))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
