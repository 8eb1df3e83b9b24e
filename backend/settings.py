"""The one settings class of the service (environment variables with the ``M3_`` prefix)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: The ten species of the M3 paper; the default target list (configuration, not code).
M3_SPECIES: tuple[str, ...] = (
    "gold", "silver", "zinc", "lead", "copper", "nickel", "iron", "uranium", "tungsten", "manganese",
)


#: The shortest admin token the service accepts (characters).
MIN_ADMIN_TOKEN_LENGTH = 32


class Settings(BaseSettings):
    """Everything the service and the command-line tool can be configured with."""

    model_config = SettingsConfigDict(env_prefix="M3_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of a PostGIS database. Unset: the project-local cluster of `m3 db start`.",
    )
    state_dir: Path = Field(
        default=PROJECT_ROOT / ".m3",
        description="Git-ignored folder for the local PostgreSQL cluster, logs and run state.",
    )
    db_port: int | None = Field(
        default=None,
        description="Port for the local cluster; unset: 5432 if free, else the first free port from 54320.",
    )
    data_dir: Path = Field(default=PROJECT_ROOT / "data", description="Bundled real inputs.")
    host: str = "127.0.0.1"
    port: int = 8000
    sites_max_limit: int = Field(default=10_000, ge=1, description="Largest `limit` /api/sites accepts.")
    sites_default_limit: int = Field(default=1000, ge=1)
    db_pool_size: int = Field(default=5, ge=1)
    admin_token: SecretStr | None = Field(
        default=None,
        description=f"Bearer token of the /admin routes (at least {MIN_ADMIN_TOKEN_LENGTH} characters); unset: the "
                    "admin routes are off (404). There is no default token.",
    )
    development: bool = Field(default=True, description="Development mode (kept for compatibility; no effect on "
                                                        "the admin token).")
    allowed_hosts: list[str] = Field(
        default=["127.0.0.1", "localhost", "::1", "testserver"],
        description="Host header values served (port ignored; '*' serves any, '*.example.org' a domain's hosts); "
                    "other hosts get 400, against DNS rebinding.")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest request body accepted (413).")
    log_level: str = "INFO"
    basemap_url: str | None = Field(
        default=None,
        description="Optional online XYZ tile URL for the map page (offline state outlines are always there).",
    )
    basemap_attribution: str | None = Field(default=None, description="Attribution shown with the online base map.")

    # -- inference ---------------------------------------------------------------------------------
    model_dir: Path = Field(default=PROJECT_ROOT / "runs" / "demo",
                            description="Folder with model.json and model.onnx (the exported model).")
    cube_dir: Path = Field(default=PROJECT_ROOT / "cube", description="The data cube built by `m3 cube build`.")
    cube_derived_covariates: bool = Field(default=True, description=(
        "`m3 cube build` adds the derived covariates (Bouguer anomaly, its residuals and gradient, multi-scale "
        "slope and roughness; docs/data.md) after the shipped ones; off: only the five shipped covariates."))
    ort_intra_threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads (0: its default).")
    ort_inter_threads: int = Field(default=1, ge=0, description="onnxruntime inter-op threads (0: its default).")
    ort_cpu_mem_arena: bool = Field(default=False, description=(
        "onnxruntime's CPU memory arena for the server's requests: about 10% faster, but it keeps the peak of the "
        "largest request for the life of the process (off: tensors go back to the allocator after each run). The "
        "whole-map pass always uses it: it runs in a process of its own."))
    ort_providers: list[str] = Field(
        default=["CUDAExecutionProvider", "CPUExecutionProvider"],
        description="Execution providers in order of preference; those not installed are skipped.",
    )
    window_size: int = Field(default=1024, ge=16, description="Side in cells of the sliding inference window.")
    window_overlap: int = Field(default=80, ge=0, description="Cells shared by neighbouring windows (blended).")
    window_margin: int = Field(default=32, ge=0, description=(
        "Cells at a window's edge left out of a whole-map pass's blend where a neighbouring window reaches them "
        "(the demo model's output there differs from a larger window's; less than half the overlap)."))
    window_band_rows: int = Field(default=256, ge=16, description=(
        "Rows of the bands a whole-map pass is cut into; only windows over CONUS cells are evaluated."))
    window_batch: int = Field(default=1, ge=1, description="Windows per onnxruntime call (memory grows with it).")
    gpu_whole_map: bool = Field(default=True, description=(
        "On a GPU provider, evaluate the whole grid in one model call instead of sliding windows (the demo "
        "model over CONUS peaked at 19.2 GiB of GPU memory; a pass that runs out falls back to sliding windows)."))
    ensemble_masks: int = Field(default=8, ge=1, description=(
        "E: mask rounds of the ensemble. Each round cuts the grid into rectangles shaped like the training "
        "regions and hides each of them in one of its evaluations (1 / masking.region_fraction of them), so "
        "every cell-species is hidden in exactly E evaluations (the demo setting: 8; the paper's: 50)."))
    ensemble_taper_cells: int = Field(default=8, ge=0, description=(
        "Cells over which a hidden cell's weight in the mean ramps up from the edge of its region (0: flat)."))
    ensemble_seed: int = Field(default=0, description="Seed of the ensemble's mask draw (`m3 infer --mask-seed`).")

    # -- layers and clusters -----------------------------------------------------------------------
    layers_dir: Path = Field(default=PROJECT_ROOT / "layers", description="Where layers/v<N>/ folders live.")
    layers_keep: int = Field(default=3, ge=1, description="Published layer versions kept on disk.")
    layer_version_ttl_s: float = Field(default=1.0, ge=0,
                                       description="Seconds a worker trusts its cached current layer version.")
    tile_cache_entries: int = Field(default=4096, ge=0, description="Most rendered tiles kept in memory (0: none).")
    tile_cache_mb: float = Field(default=64.0, ge=0,
                                 description="Bytes of rendered tiles kept in memory, in MB (0: no cache).")
    cluster_top_share: float = Field(default=0.01, gt=0, lt=1, description=(
        "Share of each species' eligible cells (inside coverage, far from its known records) that is flagged: "
        "those with the highest ensemble-mean probability."))
    cluster_min_cells: int = Field(default=4, ge=1, description="Smallest flagged cluster, in cells.")
    cluster_site_distance_m: float = Field(default=2000.0, ge=0, description=(
        "A flagged cell lies at least this far (metres) from every known record of its species."))
    cluster_min_surveyed: float = Field(default=0.75, ge=0, le=1, description=(
        "A flagged cell has at least this share of surveyed cells within cluster_context_cells of it: a cell on a "
        "coast, an island or a surveyed state's border is predicted mostly from unknown ground (0: no limit)."))
    cluster_context_cells: int | None = Field(default=None, ge=0, description=(
        "Half-side in cells of the square cluster_min_surveyed looks at (default: the model's widest input radius, "
        "model.json's config.train.context_radius, else its blur_radius)."))
    cluster_max_per_species: int = Field(default=200, ge=1,
                                         description="Clusters kept per species (by mean score x log size).")

    # -- on-request inference ----------------------------------------------------------------------
    infer_max_cells: int = Field(default=250_000, ge=1, description="Largest box /api/infer accepts, in cells.")
    infer_max_ensemble: int = Field(default=16, ge=1, description="Largest ensemble /api/infer accepts.")
    infer_context_cells: int = Field(default=32, ge=0, description="Context read around an /api/infer box.")
    infer_layers_kept: int = Field(default=64, ge=1, description="Temporary /api/infer layers kept for tiles.")
    infer_concurrency: int = Field(default=1, ge=1, description="/api/infer requests run at once.")
    infer_queue: int = Field(default=2, ge=0, description="/api/infer requests waiting; beyond: 429 + Retry-After.")
    heavy_concurrency: int = Field(default=2, ge=1, description=(
        "Box statistics and downloads (/api/prospectivity, tile statistics) run at once."))
    heavy_queue: int = Field(default=4, ge=0, description="Of those, requests waiting; beyond: 429 + Retry-After.")
    tile_concurrency: int = Field(default=8, ge=1, description="Uncached tile renders at once.")
    tile_queue: int = Field(default=64, ge=0, description="Tile renders waiting; beyond: 429 + Retry-After.")
    pool_wait_s: float = Field(default=30.0, gt=0, description="Longest wait for a slot before a 429.")
    prospectivity_max_cells: int = Field(default=4_000_000, ge=1,
                                         description="Largest box /api/prospectivity reads, in cells.")

    @property
    def local_cluster_dir(self) -> Path:
        """Folder of the project-local PostgreSQL cluster."""
        return self.state_dir / "pg"

    @property
    def admin_enabled(self) -> bool:
        """True when an admin token is set (the /admin routes exist only then)."""
        return self.admin_token is not None and self.admin_token.get_secret_value() != ""

    def check_production(self) -> None:
        """Raise ValueError, in words, when the settings are unsafe to serve with (checked at start-up)."""
        if self.admin_token is not None and 0 < len(self.admin_token.get_secret_value()) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(f"M3_ADMIN_TOKEN is {len(self.admin_token.get_secret_value())} characters long; it must "
                             f"have at least {MIN_ADMIN_TOKEN_LENGTH} (e.g. python3 -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))'), or be unset to turn the admin routes off")

    def resolved_database_url(self) -> str:
        """The database URL in use: M3_DATABASE_URL, else the local cluster's."""
        if self.database_url:
            return self.database_url
        from backend.db.cluster import LocalCluster

        return LocalCluster.from_settings(self).url()


@lru_cache
def get_settings() -> Settings:
    """Settings read once from the environment (tests build their own)."""
    return Settings()
