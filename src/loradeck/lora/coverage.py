"""Per-LoRA coverage of one generation: modules matched of those the file targets, keys left unmatched, and whether
the LoRA did nothing at all — shown with every result (CLI, API ``info``/``warnings``, UI status), never only logged.

"The LoRA did nothing" is the most common LoRA complaint in every UI's tracker; a LoRA that matched no module, was
made for another base model or could not be found is therefore an error-level line, not a log entry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from loradeck.lora.report import FileReport, StackReport


@dataclass(frozen=True)
class LoraCoverage:
    """What one LoRA of a job did to the model."""

    name: str
    matched: int  # modules of the file applied to the model
    targeted: int  # modules in the file
    unmatched_keys: int  # keys of the file that went nowhere (unknown module names, unparsed keys)
    error: str | None = None  # why the LoRA changed nothing (no module matched, other family, not found, unreadable)

    @property
    def percent(self) -> float:
        return 100.0 * self.matched / self.targeted if self.targeted else 0.0

    def line(self) -> str:
        """One sentence: the coverage, or the error."""
        if self.error:
            return self.error
        keys = f"{self.unmatched_keys} key{'s' if self.unmatched_keys != 1 else ''} left unmatched"
        return f"LoRA {self.name}: {self.matched}/{self.targeted} modules matched ({self.percent:.0f} %), {keys}."

    def to_dict(self) -> dict:
        return asdict(self) | {"percent": round(self.percent, 1), "line": self.line()}


def _of_file(rep: FileReport) -> LoraCoverage:
    error = None
    if rep.skipped or rep.modules_matched == 0:
        error = (rep.warning or f"LoRA {rep.name} matches no module of the loaded model; it was skipped") + "."
    return LoraCoverage(rep.name, rep.modules_matched, rep.modules_total, len(rep.unmatched_keys), error)


def coverage_of(report: StackReport | None, not_applied: dict[str, str] | None = None) -> list[LoraCoverage]:
    """One entry per LoRA of the job: those the patcher saw (``report``), then those planning dropped before
    (``not_applied``: name → the sentence that says why — unknown name, other family, unreadable file)."""
    out = [_of_file(rep) for rep in (report.files if report else [])]
    out += [LoraCoverage(name, 0, 0, 0, reason) for name, reason in (not_applied or {}).items()]
    return out


def error_lines(coverage: list[LoraCoverage]) -> list[str]:
    return [c.line() for c in coverage if c.error]
