"""The lines of a `plates predict` output, whoever answered (a local `swift infer`, :mod:`plates.engine_answers`,
or running servers, :mod:`plates.predict_endpoint`): a response parsed, schema-checked and normalised, the
fingerprint of the settings that decide the answers (a re-run with other settings into the same file is refused
rather than mixed), and the run's summary."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plates.errors import UserError
from plates.evaluation.extract import parse_response
from plates.grounding import is_box
from plates.io import iter_jsonl, write_jsonl
from plates.labels import PLATE_BOX, PLATE_GROUP, VEHICLE_GROUP, answer_from_labels, plates_of_answer
from plates.schema import answer_validator
from plates.student import EXTRACTION_PROMPT, GROUNDING_PROMPT, StudentContract


def describe_answer(response: Any, validator: Any = None) -> dict[str, Any]:
    """The parsed, schema-checked and normalised form of one raw response."""
    parsed = parse_response(response)
    validator = validator or answer_validator()
    if not parsed.ok:
        return {"answer": None, "parse_method": parsed.method, "schema_valid": False,
                "violations": ["not a JSON object"]}
    value = parsed.value
    violations = sorted(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                        for e in validator.iter_errors(value))
    answer = None
    if isinstance(value, dict):
        vehicle = value.get(VEHICLE_GROUP) if isinstance(value.get(VEHICLE_GROUP), dict) else {}
        plates = plates_of_answer(value)
        answer = answer_from_labels({VEHICLE_GROUP: vehicle, PLATE_GROUP: plates},  # a well-formed box is kept
                                    boxes=[p.get(PLATE_BOX) if is_box(p.get(PLATE_BOX)) else None for p in plates])
    return {"answer": answer, "parse_method": parsed.method, "schema_valid": not violations, "violations": violations}


@dataclass
class PredictSummary:
    out: str
    files: int = 0
    images: int = 0
    rejected: int = 0
    answered: int = 0
    skipped: int = 0
    schema_valid: int = 0
    parsed: int = 0
    chunks: int = 0
    torn_bytes: int = 0
    seconds: float = 0.0
    reject_codes: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in ("out", "files", "images", "rejected", "answered", "skipped",
                                              "schema_valid", "parsed", "chunks", "torn_bytes")}
        return {**data, "seconds": round(self.seconds, 3), "reject_codes": dict(self.reject_codes)}

    def format(self, how: str | None = None) -> str:
        """The closing lines; ``how`` the answers came (default: ``in N chunk(s)``)."""
        rate = self.answered / self.seconds if self.seconds > 0 else 0.0
        how = how or f"in {self.chunks} chunk(s)"
        lines = [f"plates predict: {self.files} files = {self.images} images + {self.rejected} rejected -> {self.out}",
                 f"  answered      {self.answered}  {how}, {rate:.2f} images/s",
                 f"  skipped       {self.skipped}  (already in the output)",
                 f"  parsed        {self.parsed}/{self.answered}",
                 f"  schema-valid  {self.schema_valid}/{self.answered}"]
        if self.reject_codes:
            lines.append("  rejects: " + ", ".join(f"{k} {v}" for k, v in self.reject_codes.most_common()))
        if self.torn_bytes:
            lines.append(f"  recovered     cut a torn last line ({self.torn_bytes} bytes) left by an earlier crash")
        return "\n".join(lines)


def settings_fingerprint(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def contract_fingerprint(contract: StudentContract, grounding: bool) -> dict[str, Any]:
    """What the run's question adds to the settings fingerprint: nothing for the default question, so outputs
    written before runs recorded their question resume as before."""
    question = contract.question(grounding)
    default = GROUNDING_PROMPT if grounding else EXTRACTION_PROMPT
    return {**({"prompt": question} if question != default else {}),
            **({"system": contract.system} if contract.system else {})}


def check_settings(output: Path, settings: str) -> None:
    """Refuse to append to an output answered with other settings (read from its first line)."""
    for number, line in iter_jsonl(output):
        other = line.get("settings") if isinstance(line, dict) else None
        if other is not None and other != settings:
            raise UserError(f"{output}: line {number} was answered with other settings (model, adapter, decoding "
                            "or token/pixel caps); write to another -o, or re-run with the same options")
        return


def resume_output(log: Any, output: Path, settings: str, rejects: Path, rejected: list[dict[str, Any]],
                  candidates: list[Any], summary: PredictSummary) -> list[Any]:
    """The start of both predict runs on an output locked by ``log`` (a :class:`plates.journal.Journal`): recover
    it (a torn last line cut), refuse other settings, write the rejects (only once every refusal is behind us: a
    refused run keeps the old ones) and return the candidates not answered yet."""
    recovered = log.recover()
    summary.torn_bytes = recovered.torn_bytes
    check_settings(output, settings)
    write_jsonl(rejects, rejected)
    pending = [c for c in candidates if c.key not in recovered.keys]
    summary.skipped = len(candidates) - len(pending)
    return pending
