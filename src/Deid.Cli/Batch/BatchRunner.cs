using System.Collections.Concurrent;
using System.Diagnostics;
using Deid.Pipeline;

namespace Deid.Cli.Batch;

/// <summary>What a run decides for one clip of the batch.</summary>
public enum ClipAction
{
    /// <summary>Done before with this input, and its output and report are still there unchanged.</summary>
    Skip,
    /// <summary>Failed before as often as --retry allows, with this same input: left failed.</summary>
    GivenUp,
    Run,
}

public sealed record ClipDecision(BatchClip Clip, ClipAction Action, int PriorFailures, ManifestRecord Fingerprint, ManifestRecord? Last);

/// <summary>Exit codes of <c>deid batch</c> (documented in the README).</summary>
public static class BatchExit
{
    public const int Ok = 0;
    public const int CouldNotStart = CliErrors.Failure; // 1
    public const int Usage = CliErrors.UsageError;      // 2
    public const int SomeFailed = 3;
    /// <summary><c>--status</c>: clips are still queued or running.</summary>
    public const int Unfinished = 4;
    public const int Cancelled = CliErrors.Cancelled;   // 130
}

public static class BatchPlanner
{
    /// <summary>The input's identity: size + mtime, and its sha256 with <paramref name="checksum"/>.</summary>
    public static ManifestRecord Fingerprint(string input, bool checksum)
    {
        var f = new FileInfo(input);
        return new ManifestRecord { Input = input, Size = f.Length, Mtime = BatchManifest.Mtime(f), Sha256 = checksum ? BatchManifest.Sha256Of(input) : null };
    }

    public static bool SameInput(ManifestRecord last, ManifestRecord now, bool checksum) =>
        last.Size == now.Size && (checksum && last.Sha256 != null ? last.Sha256 == now.Sha256 : last.Mtime == now.Mtime);

    /// <summary>The output and report a done record names are still there, as written (size and mtime).</summary>
    public static bool OutputVerified(ManifestRecord done)
    {
        if (done.Output is null || done.Report is null || !File.Exists(done.Output) || !File.Exists(done.Report)) return false;
        var f = new FileInfo(done.Output);
        return f.Length == done.OutputSize && BatchManifest.Mtime(f) == done.OutputMtime;
    }

    public static List<ClipDecision> Decide(IEnumerable<BatchClip> clips, ManifestState state, int retry, bool checksum)
    {
        var list = new List<ClipDecision>();
        foreach (var clip in clips)
        {
            ManifestRecord fp;
            try { fp = Fingerprint(clip.Input, checksum); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                fp = new ManifestRecord { Input = clip.Input };
            }
            state.Clips.TryGetValue(clip.Input, out var last);
            if (last is null || !SameInput(last, fp, checksum) || last.Output != clip.Output)
            {
                list.Add(new ClipDecision(clip, ClipAction.Run, 0, fp, last));
                continue;
            }
            var attempt = last.Attempt ?? 0;
            var prior = last.Status switch
            {
                ClipStatus.Failed => attempt,
                ClipStatus.Running or ClipStatus.Interrupted => Math.Max(0, attempt - 1),
                ClipStatus.Queued => attempt,
                _ => 0,
            };
            var action = last.Status switch
            {
                ClipStatus.Done when OutputVerified(last) => ClipAction.Skip,
                ClipStatus.Failed when attempt >= 1 + retry => ClipAction.GivenUp,
                _ => ClipAction.Run,
            };
            list.Add(new ClipDecision(clip, action, action == ClipAction.Run && last.Status == ClipStatus.Done ? 0 : prior, fp, last));
        }
        return list;
    }
}

/// <summary>What a display is told while a batch runs.</summary>
public interface IBatchDisplay
{
    void Start(int clips, long estimatedFrames);
    void ClipStarted(BatchClip clip, int attempt, long estimatedFrames);
    void ClipProgress(BatchClip clip, long framesDone, double fps);
    void ClipFinished(BatchClip clip, ManifestRecord record, bool willRetry);
}

public sealed record BatchRunSettings
{
    /// <summary>Clips at once in this process, on the one engine.</summary>
    public int Jobs { get; init; } = 1;
    /// <summary>How many times a failing clip is tried again (in this run and across runs).</summary>
    public int Retry { get; init; } = 1;
    public bool Checksum { get; init; }
    /// <summary>Detector workers per clip as given on the command line; null: the cores divided among the jobs.</summary>
    public int? Workers { get; init; }
    public string? Plan { get; init; }
    public int? Task { get; init; }

    /// <summary>The cores this process may use: Slurm's allocation inside a job, else the machine's.</summary>
    public static int Cores =>
        int.TryParse(Environment.GetEnvironmentVariable("SLURM_CPUS_PER_TASK"), out var c) && c > 0 ? c : Environment.ProcessorCount;

    public int WorkersPerClip => Workers ?? Math.Max(1, Cores / Math.Max(1, Jobs));
}

public sealed record BatchOutcome(int Done, int Failed, int Interrupted, bool Cancelled, TimeSpan Elapsed, long Frames);

/// <summary>
/// Runs clips on one engine (models loaded once), <see cref="BatchRunSettings.Jobs"/> at a time, recording each
/// start and end in the manifest. A failing clip is recorded with its one-line error, tried again up to --retry times,
/// and never stops the others; Ctrl-C stops every clip (the engine removes its temp output) and records them as
/// interrupted, so a rerun continues.
/// </summary>
public sealed class BatchRunner(DeidEngine engine, BatchManifest manifest, AnonymizeOptions options, BatchRunSettings settings, IBatchDisplay? display = null)
{
    public async Task<BatchOutcome> RunAsync(IReadOnlyList<ClipDecision> todo, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var jobOptions = options with { Workers = settings.WorkersPerClip };
        var estimates = new ConcurrentDictionary<string, long>();
        foreach (var d in todo) estimates[d.Clip.Input] = d.Clip.EstimatedFrames;
        display?.Start(todo.Count, todo.Sum(d => d.Clip.EstimatedFrames));

        var queue = new ConcurrentQueue<(ClipDecision Decision, int Attempt)>(todo.Select(d => (d, d.PriorFailures + 1)));
        int done = 0, failed = 0, interrupted = 0;
        long frames = 0;
        var maxAttempts = 1 + settings.Retry;

        async Task Worker()
        {
            while (!ct.IsCancellationRequested && queue.TryDequeue(out var item))
            {
                var (d, attempt) = item;
                var clip = d.Clip;
                var started = DateTimeOffset.UtcNow;
                var baseRecord = d.Fingerprint.Clone();
                baseRecord.Type = "clip";
                baseRecord.Output = clip.Output;
                baseRecord.Report = clip.Report;
                baseRecord.Attempt = attempt;
                baseRecord.Started = started;
                baseRecord.Host = Environment.MachineName;
                baseRecord.Pid = Environment.ProcessId;
                baseRecord.Plan = settings.Plan;
                baseRecord.Task = settings.Task;
                var running = baseRecord.Clone();
                running.Status = ClipStatus.Running;
                running.Time = started;
                manifest.Append(running);
                display?.ClipStarted(clip, attempt, estimates.GetValueOrDefault(clip.Input));

                var rec = baseRecord.Clone();
                var sw = Stopwatch.StartNew();
                try
                {
                    Directory.CreateDirectory(Path.GetDirectoryName(clip.Output)!);
                    var progress = new InlineProgress(p => display?.ClipProgress(clip, p.FramesDone, p.Fps));
                    using var report = await engine.AnonymizeAsync(clip.Input, clip.Output, jobOptions, progress, ct).ConfigureAwait(false);
                    report.WriteJson(clip.Report);
                    var outInfo = new FileInfo(clip.Output);
                    rec.Status = ClipStatus.Done;
                    rec.Frames = report.Frames;
                    rec.Faces = report.Faces;
                    rec.Replaced = report.Replaced;
                    rec.Tracked = report.Tracked;
                    rec.FallbackBlurred = report.FallbackBlurred;
                    rec.Audited = report.Audited;
                    if (report.Audited)
                    {
                        rec.LeaksFound = report.LeaksFound;
                        rec.LeaksFixed = report.LeaksFixed;
                        rec.LeaksBlurred = report.LeaksBlurred;
                    }
                    rec.Warnings = report.Warnings.Count;
                    rec.OutputSize = outInfo.Length;
                    rec.OutputMtime = BatchManifest.Mtime(outInfo);
                    Interlocked.Add(ref frames, report.Frames);
                    Interlocked.Increment(ref done);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    rec.Status = ClipStatus.Interrupted;
                    rec.Error = "cancelled";
                    Interlocked.Increment(ref interrupted);
                }
                catch (Exception e)
                {
                    rec.Status = ClipStatus.Failed;
                    rec.Error = OneLine(e);
                }
                rec.Seconds = Math.Round(sw.Elapsed.TotalSeconds, 3);
                rec.Time = DateTimeOffset.UtcNow;
                var retry = rec.Status == ClipStatus.Failed && attempt < maxAttempts && !ct.IsCancellationRequested;
                if (rec.Status == ClipStatus.Failed && !retry) Interlocked.Increment(ref failed);
                manifest.Append(rec);
                display?.ClipFinished(clip, rec, retry);
                if (retry) queue.Enqueue((d, attempt + 1));
            }
        }

        var workers = Enumerable.Range(0, Math.Max(1, Math.Min(settings.Jobs, todo.Count))).Select(_ => Task.Run(Worker, CancellationToken.None)).ToArray();
        await Task.WhenAll(workers).ConfigureAwait(false);
        return new BatchOutcome(done, failed, interrupted, ct.IsCancellationRequested, clock.Elapsed, frames);
    }

    /// <summary>An exception as the one line the manifest and summary keep (the engine's messages already are one line).</summary>
    public static string OneLine(Exception e)
    {
        if (e is AggregateException { InnerExceptions.Count: 1 } a) e = a.InnerException!;
        var msg = e is PipelineException or Deid.Media.MediaException or IOException or UnauthorizedAccessException or ArgumentException
            ? e.Message : $"{e.GetType().Name}: {e.Message}";
        return string.Join(' ', msg.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    private sealed class InlineProgress(Action<PipelineProgress> report) : IProgress<PipelineProgress>
    {
        public void Report(PipelineProgress value) => report(value);
    }
}
