"""The face editor's engine: PyTorch networks, their files, latent algorithms and the jobs a worker runs (no Qt).

This module is the engine's public API: the editor imports only names listed in ``__all__`` (a test checks it).

Files and networks::

    from engine import load_generator
    G = load_generator(path_or_checkpoint_dict)      # eval-mode CPU module, any supported format
    ws = G.mapping(z, truncation_psi=0.7)            # [B, num_ws, w_dim]
    img = G.synthesis(ws, noise_mode="const")        # [B, 3, H, W], raw float32

The editor's document is an immutable ``EditState`` (``engine.project``); every unit of work on it is a job
(``RenderJob(state)``, ``InvertJob(...)``, ``TranslateFolderJob(...)``, …), a callable of a ``JobContext``, that a
``Worker`` runs on its thread: ``worker.submit(job, slot=...)`` returns a ``JobHandle`` (a future with progress,
partial results and cancellation; latest wins in a slot). Problems a user can fix raise the exceptions in
``engine.errors``; a failed job's handle keeps its exception, and ``ErrorReport`` turns any exception into a sentence
plus the details for the log where it is shown.
"""
from engine.algorithms.flow_edit import (
    LIGHTING_PRESETS,
    SLIDER_STEPS,
    AttributeEdit,
    merge_edit,
    slider_from_target,
    slider_target,
)
from engine.algorithms.flow_layout import (
    DEFAULT_DEGREE,
    DEFAULT_RANGE,
    FLOW_LAYOUT_HELP,
    STYLEFLOW,
    AttributeSpec,
    ConditionLayout,
    LayoutError,
    parse_layout,
    parse_rows,
    rows_text,
)
from engine.algorithms.latents import parse_seeds
from engine.algorithms.pivotal import TuneSettings
from engine.algorithms.projection import InversionSettings
from engine.assets import ASSETS_DIR, DEFAULT_ENCODER, DEFAULT_ESTIMATOR, DEFAULT_FLOW, DEFAULT_GENERATOR
from engine.devices import device_choices, resolve_device
from engine.errors import (
    DetectorUnavailable,
    DeviceError,
    ErrorReport,
    ModelFormatError,
    PhotoError,
    PrecisionError,
    plain_text,
)
from engine.files.loading import ModelInfo, inspect_model, load_discriminator, load_generator
from engine.jobs.condition import FlowReading, FlowReadJob
from engine.jobs.export import LATENT_FORMATS, BatchExportJob, image_format, load_latent, save_image, save_latent
from engine.jobs.i2i import (
    I2IExportJob,
    I2IFolderJob,
    I2IInput,
    I2IJob,
    I2IRequest,
    I2IStrip,
    SaveImageJob,
    shipped_i2i,
)
from engine.jobs.models import ROLE_NAMES, ROLES, ModelFacts, ModelsJob, Pairing, PairJob
from engine.jobs.photo import (
    PHOTO_SECONDS,
    PHOTO_STEPS,
    TUNINGS,
    InversionOutcome,
    InversionStep,
    InvertJob,
    PasteJob,
    PasteResult,
    PhotoScan,
    Reconstruction,
    ReconstructionJob,
    ScanJob,
    TuneJob,
    TuneOutcome,
    photo_latent,
    quick_tuning,
    tuning_after,
)
from engine.jobs.render import (
    AttributeReading,
    AttributeReadJob,
    FlowProbe,
    FlowProbeJob,
    LatentJob,
    ModelJob,
    ModelSummary,
    RenderJob,
    RenderResult,
    ThumbnailJob,
    ThumbnailResult,
)
from engine.jobs.translate import (
    DISTANCE_LATENTS,
    DistanceJob,
    FolderSummary,
    ModelDistance,
    SamplesExportJob,
    SourceRender,
    SourceRenderJob,
    StyleGrid,
    StyleGridJob,
    TargetInfo,
    TargetJob,
    TranslateFolderJob,
    shipped_targets,
    with_style,
)
from engine.logs import log_dir, log_path, setup_logging
from engine.models.precision import PRECISION_HELP, PRECISIONS, parse_precision, precision_dtype
from engine.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from engine.photos.align import AlignTransform, box_transform, face_transform
from engine.project import (
    EDIT_METHODS,
    MAX_EDITS,
    SEED_LIMIT,
    EditState,
    ModelRef,
    PhotoRef,
    ProjectError,
    Source,
    Translation,
    read_project,
    save_project,
    verify_files,
)
from engine.runtime import tune_allocator
from engine.worker import Cancelled, InlineContext, Job, JobContext, JobHandle, Worker

__all__ = [
    # networks and their files
    "load_generator", "load_discriminator", "inspect_model", "ModelInfo",
    "Generator", "GeneratorConfig", "Discriminator", "DiscriminatorConfig",
    "ASSETS_DIR", "DEFAULT_GENERATOR", "DEFAULT_ESTIMATOR", "DEFAULT_FLOW", "DEFAULT_ENCODER",
    # the document
    "EditState", "ModelRef", "PhotoRef", "Source", "Translation", "SEED_LIMIT", "EDIT_METHODS", "MAX_EDITS",
    "read_project", "save_project", "verify_files",
    "parse_seeds", "AttributeEdit", "merge_edit", "slider_target", "slider_from_target", "SLIDER_STEPS",
    "LIGHTING_PRESETS", "ConditionLayout", "AttributeSpec", "STYLEFLOW", "LayoutError", "parse_layout", "parse_rows",
    "rows_text", "DEFAULT_RANGE", "DEFAULT_DEGREE", "FLOW_LAYOUT_HELP",
    "InversionSettings", "AlignTransform", "box_transform", "face_transform",
    # the worker and its jobs
    "Worker", "JobHandle", "Job", "JobContext", "InlineContext", "Cancelled",
    "RenderJob", "RenderResult", "ModelJob", "ModelSummary", "LatentJob", "ThumbnailJob", "ThumbnailResult",
    "AttributeReadJob", "AttributeReading", "FlowReadJob", "FlowReading", "FlowProbeJob", "FlowProbe",
    "ScanJob", "PhotoScan", "InvertJob", "InversionStep", "InversionOutcome", "PasteJob", "PasteResult",
    "ReconstructionJob", "Reconstruction", "photo_latent", "TuneJob", "TuneOutcome", "TuneSettings",
    "PHOTO_STEPS", "PHOTO_SECONDS", "TUNINGS", "quick_tuning", "tuning_after",
    "ModelsJob", "ModelFacts", "PairJob", "Pairing", "ROLES", "ROLE_NAMES",
    "TargetJob", "TargetInfo", "StyleGridJob", "StyleGrid", "SourceRenderJob", "SourceRender", "DistanceJob",
    "ModelDistance", "DISTANCE_LATENTS", "SamplesExportJob", "TranslateFolderJob", "FolderSummary",
    "shipped_targets", "with_style",
    "I2IJob", "I2IRequest", "I2IInput", "I2IStrip", "I2IExportJob", "I2IFolderJob", "SaveImageJob", "shipped_i2i",
    "BatchExportJob", "save_image", "save_latent", "load_latent", "image_format", "LATENT_FORMATS",
    # devices, errors, logs, process
    "resolve_device", "device_choices", "ErrorReport", "ModelFormatError", "PhotoError", "ProjectError",
    "DeviceError", "DetectorUnavailable", "plain_text", "PrecisionError", "PRECISIONS", "PRECISION_HELP",
    "parse_precision", "precision_dtype", "setup_logging", "log_path", "log_dir", "tune_allocator",
]
