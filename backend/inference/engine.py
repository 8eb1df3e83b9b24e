"""The onnxruntime engine: one session per process, CUDA first when present, CPU otherwise."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from backend.inference.contract import ModelCard, load_model_card
from backend.settings import Settings

log = logging.getLogger(__name__)

_shared_arena_lock = threading.Lock()
_shared_arena = False


def _register_shared_cpu_arena(ort: Any) -> None:
    """Register one CPU arena with onnxruntime's process-wide environment (once per process).

    Sessions that opt in (``session.use_env_allocators``) draw their activations from it instead of an arena
    each: the whole-map pass holds a session per member, and three arenas of a 1,024-cell window held
    6.1 GB where one holds 2.2 GB (BENCHMARKS.md).
    """
    global _shared_arena
    with _shared_arena_lock:
        if _shared_arena:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))  # onnxruntime's defaults
        _shared_arena = True

#: onnxruntime providers that run on an accelerator.
GPU_PROVIDERS = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider",
                           "MIGraphXExecutionProvider", "DmlExecutionProvider"})


class InferenceEngine:
    """An onnxruntime session for one exported model, with the card that describes it."""

    def __init__(self, card: ModelCard, providers: Sequence[str] = ("CPUExecutionProvider",),
                 intra_threads: int = 0, inter_threads: int = 1, cpu_mem_arena: bool = False,
                 member: int = 0, hidden: bool = False) -> None:
        import onnxruntime as ort

        self._args = (tuple(providers), intra_threads, inter_threads, cpu_mem_arena)
        self.member = member
        #: whether this engine runs the member's all-hidden graph (valid only where every species is hidden)
        self.hidden = hidden
        self._members: list[InferenceEngine] | None = [self] if len(card.members) <= 1 else None
        self._hidden_members: list[InferenceEngine] | None = None

        available = ort.get_available_providers()
        chosen = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_threads
        options.inter_op_num_threads = inter_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = cpu_mem_arena
        if cpu_mem_arena:
            # the members' sessions share one arena: one window's activations at a time, not one per member
            _register_shared_cpu_arena(ort)
            options.add_session_config_entry("session.use_env_allocators", "1")
        self.card = card
        self.options = options
        # a CUDA arena that grows by what is asked, not to the next power of two: a whole-grid pass asks for
        # tensors of gigabytes, and doubling them can run a card out of memory that would have sufficed
        provider_options = [{"arena_extend_strategy": "kSameAsRequested"} if p == "CUDAExecutionProvider" else {}
                            for p in chosen]
        self.path = card.member_path(member, hidden)
        self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=chosen,
                                            provider_options=provider_options)
        self.provider = self.session.get_providers()[0]
        self._lock = threading.Lock() if self.provider != "CPUExecutionProvider" else None
        inputs = {i.name: i for i in self.session.get_inputs()}
        if card.input_name not in inputs:
            raise ValueError(f"model.onnx has inputs {sorted(inputs)}, model.json names {card.input_name!r}")
        shape = inputs[card.input_name].shape
        if len(shape) == 4 and isinstance(shape[1], int) and shape[1] != len(card.channels):
            raise ValueError(f"model.onnx takes {shape[1]} channels, model.json lists {len(card.channels)}")
        log.info("model %s on %s (available: %s)", card.name, self.provider, ", ".join(available))

    @property
    def members(self) -> list[InferenceEngine]:
        """An engine for every member of the model (training seeds), this one first; made once, on first use."""
        if self._members is None:
            self._members = [self] + [InferenceEngine(self.card, *self._args, member=k, hidden=self.hidden)
                                      for k in range(1, len(self.card.members))]
        return self._members

    @property
    def hidden_members(self) -> list[InferenceEngine]:
        """An engine per member for cells where every species is hidden (made once, on first use).

        The members' all-hidden graphs when the model has them (model.json ``hidden_onnx``), else :attr:`members`.
        """
        if self.hidden or not self.card.has_hidden_graphs:
            return self.members
        if self._hidden_members is None:
            self._hidden_members = [InferenceEngine(self.card, *self._args, member=k, hidden=True)
                                    for k in range(len(self.card.members))]
        return self._hidden_members

    @property
    def on_gpu(self) -> bool:
        """Whether the onnxruntime session runs on an accelerator (CUDA, TensorRT, ROCm...), not the CPU."""
        return self.provider in GPU_PROVIDERS

    @classmethod
    def from_settings(cls, settings: Settings, model_dir: Path | None = None,
                      cpu_mem_arena: bool | None = None) -> InferenceEngine:
        """The engine for the configured model folder and threads (``cpu_mem_arena`` overrides the setting)."""
        card = load_model_card(model_dir or settings.model_dir)
        arena = settings.ort_cpu_mem_arena if cpu_mem_arena is None else cpu_mem_arena
        return cls(card, settings.ort_providers, settings.ort_intra_threads, settings.ort_inter_threads, arena)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities [N, S, H, W] for raw inputs [N, C, H, W] (H, W multiples of card.multiple)."""
        feed = {self.card.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        if self._lock is None:
            out = self.session.run([self.card.output_name], feed)[0]
        else:
            with self._lock:
                out = self.session.run([self.card.output_name], feed)[0]
        return np.asarray(out, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """Model and provider for /healthz."""
        return {"model": self.card.name, "provider": self.provider, "species": list(self.card.species)}
