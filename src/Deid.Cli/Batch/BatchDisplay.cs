using System.Collections.Concurrent;
using System.Diagnostics;
using Spectre.Console;

namespace Deid.Cli.Batch;

/// <summary>Shared counters: clips done/failed, frames, frames/s, ETA.</summary>
public abstract class BatchDisplayBase : IBatchDisplay
{
    private readonly ConcurrentDictionary<string, long> _inFlight = new();
    private readonly Stopwatch _clock = new();
    private long _finishedFrames, _estimated;
    private int _done, _failed, _clips;

    protected int Done => _done;
    protected int Failed => _failed;
    protected int Clips => _clips;
    protected long Estimated => Math.Max(Volatile.Read(ref _estimated), FramesSoFar);
    protected long FramesSoFar => Volatile.Read(ref _finishedFrames) + _inFlight.Values.Sum();
    protected double Fps => _clock.Elapsed.TotalSeconds > 0.5 ? FramesSoFar / _clock.Elapsed.TotalSeconds : 0;

    protected string Eta
    {
        get
        {
            var fps = Fps;
            if (fps <= 0 || Estimated <= 0) return "?";
            var left = TimeSpan.FromSeconds(Math.Max(0, Estimated - FramesSoFar) / fps);
            return left.TotalHours >= 1 ? left.ToString(@"h\:mm\:ss") : left.ToString(@"m\:ss");
        }
    }

    public virtual void Start(int clips, long estimatedFrames)
    {
        _clips = clips;
        _estimated = estimatedFrames;
        _clock.Start();
    }

    public virtual void ClipStarted(BatchClip clip, int attempt, long estimatedFrames) => _inFlight[clip.Input] = 0;

    public virtual void ClipProgress(BatchClip clip, long framesDone, double fps) => _inFlight[clip.Input] = framesDone;

    public virtual void ClipFinished(BatchClip clip, ManifestRecord record, bool willRetry)
    {
        _inFlight.TryRemove(clip.Input, out _);
        if (record.Status == ClipStatus.Done)
        {
            Interlocked.Add(ref _finishedFrames, record.Frames ?? 0);
            // the estimate was the header's guess; count what the clip really had
            Interlocked.Add(ref _estimated, (record.Frames ?? 0) - clip.EstimatedFrames);
            Interlocked.Increment(ref _done);
        }
        else if (record.Status == ClipStatus.Failed && !willRetry)
        {
            Interlocked.Add(ref _estimated, -clip.EstimatedFrames);
            Interlocked.Increment(ref _failed);
        }
    }
}

/// <summary>One line per finished clip (output not a terminal: logs, Slurm task output, tests).</summary>
public sealed class LineDisplay(TextWriter output) : BatchDisplayBase
{
    private readonly object _write = new();

    public override void ClipFinished(BatchClip clip, ManifestRecord record, bool willRetry)
    {
        base.ClipFinished(clip, record, willRetry);
        var head = $"[{Done + Failed}/{Clips}]";
        var line = record.Status switch
        {
            ClipStatus.Done => $"{head} done    {clip.Relative}: {record.Frames} frames, {record.Faces} faces" +
                               (record.FallbackBlurred > 0 ? $", {record.FallbackBlurred} FALLBACK-BLURRED" : "") + $", {record.Seconds:F1} s" +
                               $" | {Fps:F1} fps, ETA {Eta}",
            ClipStatus.Failed when willRetry => $"{head} retry   {clip.Relative} (attempt {record.Attempt} failed: {record.Error})",
            ClipStatus.Failed => $"{head} FAILED  {clip.Relative}: {record.Error}",
            _ => $"{head} stopped {clip.Relative} (interrupted)",
        };
        lock (_write) output.WriteLine(line);
    }
}

/// <summary>A live Spectre.Console display: the whole batch (clips done/failed, frames/s, ETA) and each running clip.</summary>
public sealed class BatchLiveDisplay(ProgressContext ctx) : BatchDisplayBase
{
    private readonly ConcurrentDictionary<string, ProgressTask> _tasks = new();
    private ProgressTask? _overall;
    private readonly object _ui = new();

    public override void Start(int clips, long estimatedFrames)
    {
        base.Start(clips, estimatedFrames);
        lock (_ui)
        {
            _overall = ctx.AddTask("batch", maxValue: Math.Max(1, estimatedFrames));
            Refresh();
        }
    }

    public override void ClipStarted(BatchClip clip, int attempt, long estimatedFrames)
    {
        base.ClipStarted(clip, attempt, estimatedFrames);
        lock (_ui)
        {
            var t = ctx.AddTask(Markup.Escape("  " + clip.Relative + (attempt > 1 ? $" (attempt {attempt})" : "")), maxValue: Math.Max(1, estimatedFrames));
            t.IsIndeterminate = estimatedFrames <= 0;
            _tasks[clip.Input] = t;
            Refresh();
        }
    }

    public override void ClipProgress(BatchClip clip, long framesDone, double fps)
    {
        base.ClipProgress(clip, framesDone, fps);
        lock (_ui)
        {
            if (_tasks.TryGetValue(clip.Input, out var t))
            {
                if (framesDone > t.MaxValue) t.MaxValue = framesDone;
                t.Value = framesDone;
            }
            Refresh();
        }
    }

    public override void ClipFinished(BatchClip clip, ManifestRecord record, bool willRetry)
    {
        base.ClipFinished(clip, record, willRetry);
        lock (_ui)
        {
            if (_tasks.TryRemove(clip.Input, out var t))
            {
                t.Value = t.MaxValue;
                t.StopTask();
            }
            Refresh();
        }
    }

    private void Refresh()
    {
        if (_overall is null) return;
        _overall.MaxValue = Math.Max(1, Estimated);
        _overall.Value = Math.Min(FramesSoFar, _overall.MaxValue);
        _overall.Description = $"clips [green]{Done}[/]/{Clips} done" + (Failed > 0 ? $", [red]{Failed} failed[/]" : "") + $" [grey]{Fps:F1} fps, ETA {Eta}[/]";
    }

    public void Finish()
    {
        lock (_ui)
        {
            Refresh();
            _overall?.StopTask();
        }
    }
}
