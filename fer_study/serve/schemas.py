"""Response models of the HTTP API: they document it in the OpenAPI schema (``/docs``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class BoxModel(BaseModel):
    x: int = Field(description="left edge, image pixels")
    y: int = Field(description="top edge, image pixels")
    w: int
    h: int


class GradcamModel(BaseModel):
    png_base64: str | None = Field(description="the face crop with its heatmap, PNG, base64")
    explains: str = Field(description="the emotion the heatmap explains (the reported one)")
    layer: str = Field(description="feature layer(s) the map is taken from (' + ' joins "
                       "an ensemble's members, whose maps are averaged)")
    score: str = Field(description="'logit' or 'prob': what the gradient is of")
    size: int = Field(description="side of the PNG in pixels")
    peak: float = Field(description="the map's maximum: 0 means no positive evidence anywhere")


class FaceModel(BaseModel):
    box: BoxModel
    detector_score: float
    track_id: int = Field(description="stable across frames of one stream; index in a POST")
    emotion: str = Field(description="top emotion")
    confidence: float = Field(description="probability of the top emotion")
    probs: dict[str, float] = Field(description="probability per emotion, as the model gives it")
    raw_probs: dict[str, float] | None = Field(
        None, description="streams only: this frame's own probabilities (probs are smoothed)"
    )
    gradcam: GradcamModel | None = None


class ModelRef(BaseModel):
    id: str = Field(description="model file name and the start of its sha256")
    calibrated: bool = Field(description="whether the model's JSON records a calibration")


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str = Field(description="JPEG, PNG or WEBP, from the content")


class PredictResponse(BaseModel):
    model: ModelRef
    image: ImageInfo
    faces: list[FaceModel]
    timings_ms: dict[str, float] = Field(
        description="wait (for a free detector), decode, detect, preprocess, classify, "
        "pipeline, gradcam (if asked), total: server-side milliseconds"
    )


class ErrorResponse(BaseModel):
    error: str = Field(description="machine-readable code, e.g. payload_too_large")
    message: str = Field(description="what went wrong and what to do, for people")


class HealthResponse(BaseModel):
    status: str
    model_id: str
    workers: int = Field(description="frames processed at once")
    detector: str
    max_upload_bytes: int
    uptime_s: float


ModelInfo = dict[str, Any]

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (413, "upload larger than the limit"),
        (415, "not a JPEG, PNG or WebP image"),
        (422, "empty, truncated or corrupt image, or dimensions over the limit"),
        (501, "Grad-CAM asked of a server that cannot compute it"),
        (503, "too many requests in flight; retry"),
    )
}
