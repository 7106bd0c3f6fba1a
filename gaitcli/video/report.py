"""What ``gait silhouettes`` prints: one table of tracks per video, with the reason for every
dropped track."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gaitcli.errors import option, render
from gaitcli.video.silhouettes import SilhouettesSummary, VideoResult

__all__ = ["render_silhouettes", "track_table"]


def track_table(video: VideoResult) -> Table:
    """Per track: id, frames, silhouettes kept, mean area, border and merged frames, status."""
    fps = f", {video.decoded / video.seconds:.1f} frames/s" if video.seconds > 0 else ""
    table = Table(title=f"{escape(video.info.source)}: {video.decoded} frames decoded{fps}",
                  title_justify="left")
    for name in ("track", "id", "frames", "kept", "mean area", "border", "merged"):
        table.add_column(name, justify="right" if name not in ("id",) else "left")
    table.add_column("status")
    for t in video.tracks:
        q = t.summary.quality
        first, last = t.span
        status = "[green]kept[/]" if t.kept else f"[yellow]dropped:[/] {escape(render(t.reason or ''))}"
        table.add_row(str(t.number), escape(t.id), f"{first}-{last}", str(len(t.frames.silhouettes)),
                      f"{q.mean_area:.0f}", str(q.border_frames), str(q.merged_frames), status)
    return table


def render_silhouettes(summary: SilhouettesSummary, console: Console) -> None:
    for video in summary.videos:
        if video.skipped:
            console.print(f"{escape(video.info.source)}: {video.skipped}", highlight=False)
            continue
        if video.warning:
            console.print(f"[yellow]warning:[/] {escape(render(video.warning))}", highlight=False)
        if video.tracks:
            console.print(track_table(video))
        else:
            console.print(f"{escape(video.info.source)}: no walker found ({video.decoded} frames)",
                          highlight=False)
    if summary.removed:
        earlier = f"({render(option('overwrite'))})"
        console.print(f"removed {len(summary.removed)} pkl(s) of the earlier run {earlier}",
                      highlight=False)
    done = sum(1 for video in summary.videos if video.skipped)
    kept = f" ({done} video(s) already done, left as they were)" if done else ""
    console.print(f"[bold]{summary.written}[/] track(s) written to {escape(summary.out)}{kept}",
                  highlight=False)
