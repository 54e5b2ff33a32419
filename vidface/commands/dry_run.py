"""`vidface restore --dry-run`: what a run would read, encode, copy and drop, written out."""

from __future__ import annotations


def describe_plan(plan, settings=None, model_name: str = "none", field_motion=None) -> str:
    """The --dry-run report: what is read, what is encoded, what is copied or dropped, and how
    IN's fields move (`vidface.io.field_motion.FieldMotion`, where measured)."""
    from av.video.reformatter import ColorRange

    from vidface.io.encode import CHAPTER_FORMATS
    from vidface.io.encoder_setup import IN_ORDER_FORMATS, output_color_range, video_codec_options
    from vidface.io.probe import field_shown_first
    from vidface.plan import frame_timing, output_chapters

    video = plan.info.video
    first = plan.first_frame
    codec_options = video_codec_options(plan.encode, video, plan.container_format, plan.pix_fmt)
    lines = [
        f"input   {plan.info.path} ({plan.info.format_name}, {video.frame_count} frames, "
        f"{video.duration:.3f} s)",
        f"video   #{video.index} {video.codec} {video.width}x{video.height} {video.pix_fmt}"
        + (f" {float(video.average_rate):g} fps" if video.average_rate else "")
        + (f" rotated {video.rotation}°" if video.rotation else "")
        + (" VFR" if video.variable_frame_rate else ""),
        f"frames  {plan.frame_count} (from frame {first}, "
        f"{float((video.pts[first] - video.pts[0]) * video.time_base):.3f} s"
        + (f"; the first {plan.never_decoded} never decode, made from pictures before IN's start"
           if plan.never_decoded else "") + ")",
        f"encode  {plan.encode.codec} {plan.pix_fmt} "
        + " ".join(f"{k}={v}" for k, v in codec_options.items()),
        "model   " + _describe_model(settings, model_name),
    ]
    for stream, converted_to in zip(plan.copied, _copied_as(plan)):
        language = f" [{stream.language}]" if stream.language else ""
        lines.append(f"copy    #{stream.index} {stream.type} {stream.codec}{language}" if converted_to is None else
                     f"convert #{stream.index} {stream.type} {stream.codec}{language} to {converted_to} "
                     f"({plan.container_format} holds no {stream.codec})")
    if plan.sound is not None:
        lines += [f"copy    #{s.index} {s.type} {s.codec} of {plan.sound.label}, placed by {plan.sound.synced}"
                  for s in plan.sound.streams]
    lines += [f"drop    #{s.index} {s.type} {s.codec}" for s in plan.dropped]
    if plan.info.chapters:
        kept = output_chapters(plan, frame_timing(plan)[3])
        lines.append(f"copy    {len(kept)} chapters" if plan.container_format in CHAPTER_FORMATS
                     else f"drop    {len(plan.info.chapters)} chapters ({plan.container_format} holds none)")
    lines.append(f"output  {plan.output} ({plan.container_format})")
    levels = output_color_range(plan.encode.codec, plan.pix_fmt, plan.container_format, video.color_range)
    if levels != video.color_range:
        lines.append(f"note    the levels become {_RANGE_NAMES[levels]} range ({_RANGE_NAMES[video.color_range]} in "
                     f"IN): " + ("MJPEG codes YUV in full range only" if levels == ColorRange.JPEG else
                                 f"a player takes {plan.encode.codec} video in {plan.container_format} as limited"))
    if video.interlaced and settings is not None and model_name != "none":
        order = "bottom" if field_shown_first(video.field_order) == "bff" else "top"
        lines.append(f"note    interlaced, {order} field first: " + (
            "faces are restored field by field (--fields)" if settings.faces.fields else
            "faces are restored in whole frames; --fields restores camera and tape video field by field"))
    if field_motion is not None:
        lines.append(f"note    fields: {field_motion.describe()}")
    if plan.container_format in IN_ORDER_FORMATS:
        lines.append(f"note    no B-frames: {IN_ORDER_FORMATS[plan.container_format]} keeps a frame's timestamp only "
                     "when frames come in presentation order")
    return "\n".join(lines)


_RANGE_NAMES = {0: "unsaid", 1: "limited", 2: "full"}


def _copied_as(plan) -> list[str | None]:
    """For each stream the plan copies, the codec a run converts it to (None: copied as it is),
    as OUT's writer decides it with OUT's own encoder, over a file in memory that is never
    written (OutputError, as a run gives, where OUT's container holds a stream not)."""
    import io

    from vidface.plan import output_writer

    writer = output_writer(plan, io.BytesIO())
    try:
        return [writer.converted.get(s.index) for s in plan.copied]
    finally:
        writer.close(flush=False)


def _describe_model(settings, model_name: str) -> str:
    if model_name == "none" or settings is None:
        return "none"
    faces, model, temporal = settings.faces, settings.model, settings.temporal
    return (f"osdface device={model.device} dtype={model.dtype} batch={model.batch_size or 'auto'}; "
            f"faces {faces.detector} every {faces.detect_every} frame(s) at {faces.detect_size or 'full'} px, "
            f"landmarks refined in {faces.refine_crops if faces.refine else 0} crops, lag {faces.lag}; temporal "
            + (f"strength {temporal.strength}" if temporal.enabled else "off") + f"; paste mask {settings.paste.mask}")
