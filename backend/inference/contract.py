"""The model contract: ``model.json`` (format m3-model/1) next to ``model.onnx``, checked on load."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.cube.contract import SURVEYED_CHANNEL, UNSURVEYED_MODES, sha256_file
from backend.inference.calibration import Calibration, CalibrationError

MODEL_FORMAT = "m3-model/1"
CHANNEL_KINDS = ("visible", "hidden", "cov", "valid", "surveyed")


class ModelContractError(ValueError):
    """model.json or model.onnx does not satisfy the m3-model/1 contract; the message says how."""


@dataclass(frozen=True)
class Channel:
    """One input channel: its kind (visible, hidden, cov, valid, surveyed) and the species or covariate it names."""

    kind: str
    name: str

    @classmethod
    def parse(cls, text: str) -> Channel:
        """A channel from 'kind:name', or ModelContractError."""
        kind, sep, name = text.partition(":")
        if not sep or kind not in CHANNEL_KINDS or not name:
            raise ModelContractError(f"channel {text!r} is not kind:name with kind one of {', '.join(CHANNEL_KINDS)}")
        return cls(kind, name)

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Member:
    """One trained network of the exported model (a training seed): its ONNX file next to model.json."""

    onnx_file: str
    sha256: str
    seed: int | None = None
    #: optional: the graph for cells where every species is hidden (a gated model's blind expert), which gives
    #: those cells the probabilities of ``onnx_file`` at less cost; the whole-map ensemble uses it
    hidden_onnx: str | None = None
    hidden_sha256: str | None = None


@dataclass(frozen=True)
class ModelCard:
    """What ``model.json`` says about an exported model."""

    folder: Path
    onnx_file: str
    input_name: str
    output_name: str
    channels: tuple[Channel, ...]
    species: tuple[str, ...]
    covariates: tuple[str, ...]
    multiple: int
    cell_size_m: float
    crs: str
    sha256: str
    cube_sha256: str | None
    opset: int | None
    metrics: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    #: how the model reads unsurveyed cells without a record (backend.cube.contract.UNSURVEYED_MODES)
    unsurveyed: str = "absent"
    #: the per-species map to calibrated probability (None: the model's probabilities are served raw)
    calibration: Calibration | None = None
    #: the trained networks the ensemble cycles through (training seeds); the first is ``onnx_file``
    members: tuple[Member, ...] = ()

    def member_path(self, k: int, hidden: bool = False) -> Path:
        """Path of member ``k``'s ONNX file (member 0 is ``onnx_path``); ``hidden``: its all-hidden graph."""
        if hidden:
            name = self.members[k].hidden_onnx if self.members else None
            if name is None:
                raise ValueError(f"member {k} of {self.name} has no graph for all-hidden cells")
            return self.folder / name
        return self.folder / self.members[k].onnx_file if self.members else self.onnx_path

    @property
    def has_hidden_graphs(self) -> bool:
        """Whether every member has a graph for cells where every species is hidden."""
        return bool(self.members) and all(m.hidden_onnx for m in self.members)

    @property
    def onnx_path(self) -> Path:
        """Path of the ONNX file."""
        return self.folder / self.onnx_file

    @property
    def name(self) -> str:
        """A short human name: the folder name and the start of the checksum."""
        return f"{self.folder.name}@{self.sha256[:12]}"

    def public(self) -> dict[str, Any]:
        """The card as JSON for /healthz and job records."""
        return {"name": self.name, "sha256": self.sha256, "species": list(self.species),
                "covariates": list(self.covariates), "channels": [str(c) for c in self.channels],
                "multiple": self.multiple, "cube": self.cube_sha256, "unsurveyed": self.unsurveyed,
                "calibration": self.calibration.method if self.calibration else None,
                "members": [{"onnx": m.onnx_file, "sha256": m.sha256, "seed": m.seed, "hidden_onnx": m.hidden_onnx}
                            for m in self.members]}


def _calibration(path: Path, raw: dict[str, Any], species: tuple[str, ...]) -> Calibration | None:
    """model.json's calibration, or ModelContractError naming the file."""
    try:
        return Calibration.parse(raw.get("calibration"), species)
    except CalibrationError as exc:
        raise ModelContractError(f"{path}: {exc}") from None


def load_model_card(folder: Path, verify: bool = True) -> ModelCard:
    """Read and check ``folder/model.json``; with ``verify`` the ONNX checksum must match."""
    path = folder / "model.json"
    if not path.is_file():
        raise ModelContractError(f"{path} does not exist; export a model (m3 export) or set M3_MODEL_DIR")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelContractError(f"{path} is not JSON: {exc}") from None
    if raw.get("format") != MODEL_FORMAT:
        raise ModelContractError(f"{path} has format {raw.get('format')!r}; expected {MODEL_FORMAT!r}")
    missing = [k for k in ("onnx", "channels", "species", "sha256") if k not in raw]
    if missing:
        raise ModelContractError(f"{path} lacks {', '.join(missing)}")
    channels = tuple(Channel.parse(c) for c in raw["channels"])
    species = tuple(raw["species"])
    covariates = tuple(raw.get("covariates") or sorted({c.name for c in channels if c.kind == "cov"}))
    card = ModelCard(
        folder=folder, onnx_file=str(raw["onnx"]), input_name=str(raw.get("input", "x")),
        output_name=str(raw.get("output", "prob")), channels=channels, species=species, covariates=covariates,
        multiple=int(raw.get("multiple") or 1), cell_size_m=float(raw.get("cell_size_m") or 0.0),
        crs=str(raw.get("crs") or ""), sha256=str(raw["sha256"]), cube_sha256=raw.get("cube"),
        opset=raw.get("opset"), metrics=raw.get("metrics") or {}, raw=raw,
        unsurveyed=str(raw.get("unsurveyed") or "absent"), calibration=_calibration(path, raw, species),
        members=_members(path, raw),
    )
    if card.unsurveyed not in UNSURVEYED_MODES:
        raise ModelContractError(f"{path}: unsurveyed is {card.unsurveyed!r}; expected one of "
                                 f"{', '.join(UNSURVEYED_MODES)}")
    if (card.unsurveyed == "unknown") != any(str(c) == SURVEYED_CHANNEL for c in channels):
        raise ModelContractError(f"{path}: a model with unsurveyed {card.unsurveyed!r} must "
                                 f"{'' if card.unsurveyed == 'unknown' else 'not '}have the {SURVEYED_CHANNEL} channel")
    if Path(card.onnx_file).name != card.onnx_file:
        raise ModelContractError(f"{path}: onnx must be a file name next to model.json, not {card.onnx_file!r}")
    if not card.onnx_path.is_file():
        raise ModelContractError(f"{card.onnx_path} does not exist")
    for member in card.members:
        onnx = folder / member.onnx_file
        if not onnx.is_file():
            raise ModelContractError(f"{onnx} (a member of {path}) does not exist")
        if verify and member.onnx_file != card.onnx_file and sha256_file(onnx) != member.sha256:
            raise ModelContractError(f"{onnx} has sha256 {sha256_file(onnx)}, model.json says {member.sha256}")
        if member.hidden_onnx is not None:
            hidden = folder / member.hidden_onnx
            if not hidden.is_file():
                raise ModelContractError(f"{hidden} (the all-hidden graph of a member of {path}) does not exist")
            if verify and sha256_file(hidden) != member.hidden_sha256:
                raise ModelContractError(f"{hidden} has sha256 {sha256_file(hidden)}, "
                                         f"model.json says {member.hidden_sha256}")
    if verify:
        actual = sha256_file(card.onnx_path)
        if actual != card.sha256:
            raise ModelContractError(f"{card.onnx_path} has sha256 {actual}, model.json says {card.sha256}")
    return card


def _members(path: Path, raw: dict[str, Any]) -> tuple[Member, ...]:
    """model.json's ``members`` (every trained network the ensemble uses); just ``onnx`` when it has none."""
    listed = raw.get("members")
    if not listed:
        return (Member(str(raw["onnx"]), str(raw["sha256"]), raw.get("seed")),)
    if not isinstance(listed, list):
        raise ModelContractError(f"{path}: members must be a list of {{onnx, sha256, seed}}")
    out = []
    for entry in listed:
        if not isinstance(entry, dict) or "onnx" not in entry or "sha256" not in entry:
            raise ModelContractError(f"{path}: a member needs onnx and sha256; got {entry!r}")
        name = str(entry["onnx"])
        hidden = entry.get("hidden_onnx")
        for file in (name, hidden):
            if file is not None and (not isinstance(file, str) or Path(file).name != file or not file):
                raise ModelContractError(f"{path}: a member's onnx and hidden_onnx must each be a file name "
                                         f"next to model.json, not {file!r}")
        if hidden is not None and not entry.get("hidden_sha256"):
            raise ModelContractError(f"{path}: a member with hidden_onnx needs hidden_sha256; got {entry!r}")
        out.append(Member(name, str(entry["sha256"]), entry.get("seed"), hidden,
                          str(entry["hidden_sha256"]) if hidden is not None else None))
    if out[0].onnx_file != str(raw["onnx"]) or out[0].sha256 != str(raw["sha256"]):
        raise ModelContractError(f"{path}: the first member must be the model's onnx ({raw['onnx']})")
    return tuple(out)
