using System.Diagnostics;
using System.Threading.Channels;
using Deid.Faces;
using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>Crops on their way to the face stage, in pipeline order (so each track's crops come in frame order).</summary>
internal sealed class FaceBatch(List<FaceJob> jobs)
{
    public List<FaceJob> Jobs { get; } = jobs;
}

/// <summary>What the inference stage did: how much it drew and how long it sat waiting for crops.</summary>
public sealed class InferenceStats
{
    private long _batches, _crops, _busyTicks, _idleTicks;
    public long Batches => Interlocked.Read(ref _batches);
    public long Crops => Interlocked.Read(ref _crops);
    public TimeSpan Busy => TimeSpan.FromTicks(Interlocked.Read(ref _busyTicks));
    /// <summary>Time between the first batch's arrival and the last batch's end spent waiting for the next batch.</summary>
    public TimeSpan Idle => TimeSpan.FromTicks(Interlocked.Read(ref _idleTicks));
    public double MeanBatch => Batches == 0 ? 0 : (double)Crops / Batches;

    internal void Add(int crops, TimeSpan busy, TimeSpan idle)
    {
        Interlocked.Increment(ref _batches);
        Interlocked.Add(ref _crops, crops);
        Interlocked.Add(ref _busyTicks, busy.Ticks);
        Interlocked.Add(ref _idleTicks, idle.Ticks);
    }
}

/// <summary>
/// Gathers crops across frames into batches for the face stage. A batch goes when it holds B crops, or when its first
/// crop's frame is <paramref name="maxLag"/> frames behind the newest (sparse faces; it must stay below the capacity
/// of <paramref name="frames"/>, or the rejoin stage, waiting for that crop, would never make room), or when the
/// stream ends. Both rules count frames and crops, never time, so the same clip is always cut into the same batches
/// and gives the same pixels. An optional timeout (off by default) also flushes a batch whose first crop waited that
/// long, for live sources. Frames pass on at once to the rejoin stage, which waits for their faces; the batch channel
/// holds one batch, so one batch fills while the previous one is drawn.
/// </summary>
internal sealed class BatchStage(int batchSize, int maxLag, TimeSpan? timeout, ChannelReader<FrameWork> input, ChannelWriter<FrameWork> frames,
    ChannelWriter<FaceBatch> batches) : Stage<FrameWork>(frames)
{
    private List<FaceJob> _current = [];
    private long _firstAt, _firstSeq;

    protected override async Task LoopAsync(CancellationToken ct)
    {
        try
        {
            while (true)
            {
                if (_current.Count > 0 && timeout is { } limit)
                {
                    var remaining = limit - Stopwatch.GetElapsedTime(_firstAt);
                    if (remaining <= TimeSpan.Zero) { await FlushAsync(ct).ConfigureAwait(false); continue; }
                    var more = input.WaitToReadAsync(ct).AsTask();
                    if (await Task.WhenAny(more, Task.Delay(remaining, ct)).ConfigureAwait(false) != more)
                    {
                        await FlushAsync(ct).ConfigureAwait(false);
                        continue;
                    }
                    if (!await more.ConfigureAwait(false)) break;
                }
                else if (!await input.WaitToReadAsync(ct).ConfigureAwait(false)) break;

                while (input.TryRead(out var work))
                {
                    if (_current.Count > 0 && work.Seq - _firstSeq >= maxLag) await FlushAsync(ct).ConfigureAwait(false);
                    foreach (var face in work.Faces)
                    {
                        if (!face.NeedsStage) { face.Done.TrySetResult(); continue; }
                        if (_current.Count == 0) { _firstAt = Stopwatch.GetTimestamp(); _firstSeq = work.Seq; }
                        _current.Add(face);
                        if (_current.Count >= batchSize) await FlushAsync(ct).ConfigureAwait(false);
                    }
                    await SendAsync(work, ct).ConfigureAwait(false);
                }
            }
            if (_current.Count > 0) await FlushAsync(ct).ConfigureAwait(false);
            batches.TryComplete();
        }
        catch (Exception e)
        {
            batches.TryComplete(e);
            throw;
        }
    }

    private async Task FlushAsync(CancellationToken ct)
    {
        var batch = new FaceBatch(_current);
        _current = [];
        await batches.WriteAsync(batch, ct).ConfigureAwait(false);
    }
}

/// <summary>
/// Runs the face stage on each batch through the device executor. A stage failure or a wrongly shaped output
/// blurs that batch's faces (fail closed); every face is marked done either way.
/// </summary>
internal sealed class InferenceStage(IFaceStage stage, DeviceExecutor device, PipelineContext context, InferenceStats stats,
    ChannelReader<FaceBatch> input)
{
    public Task RunAsync(CancellationToken ct) => Task.Run(async () =>
    {
        long? lastEnd = null;
        await foreach (var batch in input.ReadAllAsync(ct).ConfigureAwait(false))
        {
            var start = Stopwatch.GetTimestamp();
            var idle = lastEnd is { } e ? Stopwatch.GetElapsedTime(e, start) : TimeSpan.Zero;
            try { Process(batch.Jobs, ct); }
            finally { foreach (var j in batch.Jobs) j.Done.TrySetResult(); }
            lastEnd = Stopwatch.GetTimestamp();
            stats.Add(batch.Jobs.Count, Stopwatch.GetElapsedTime(start, lastEnd.Value), idle);
        }
    }, CancellationToken.None);

    private void Process(List<FaceJob> jobs, CancellationToken ct)
    {
        try
        {
            var crops = jobs.Select(j => j.ToCrop()).ToList();
            var outputs = device.Run(() => stage.Process(crops, ct));
            Assign(stage, context, jobs, crops, outputs);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            context.Warn($"face stage '{stage.Name}' failed ({e.Message}); its faces were blurred instead");
            foreach (var j in jobs) j.FallBack();
        }
    }

    /// <summary>Gives each job its output crop; a count or size mismatch blurs the face instead.</summary>
    internal static void Assign(IFaceStage stage, PipelineContext context, IReadOnlyList<FaceJob> jobs, IReadOnlyList<FaceCrop> crops, IReadOnlyList<Mat> outputs)
    {
        if (outputs.Count != jobs.Count)
        {
            foreach (var o in outputs) if (!crops.Any(c => ReferenceEquals(c.Crop, o))) o.Dispose();
            throw new InvalidOperationException($"returned {outputs.Count} crops for {jobs.Count}");
        }
        for (var i = 0; i < jobs.Count; i++)
        {
            var o = outputs[i];
            var crop = jobs[i].Aligned!.Crop;
            if (jobs[i].Output != null && !ReferenceEquals(jobs[i].Output, crop) && !ReferenceEquals(jobs[i].Output, o)) jobs[i].Output!.Dispose();
            jobs[i].Output = o;
            if (o.Width != crop.Width || o.Height != crop.Height || o.Type() != crop.Type())
            {
                context.Warn($"face stage '{stage.Name}' returned a {o.Width}x{o.Height} crop for a {crop.Width}x{crop.Height} one; that face was blurred instead");
                jobs[i].FallBack();
            }
        }
    }
}

/// <summary>Frames back in order, each once every one of its faces is back from the face stage.</summary>
internal sealed class RejoinStage(ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output) : Stage<FrameWork>(output)
{
    protected override async Task LoopAsync(CancellationToken ct)
    {
        await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
        {
            try { await Task.WhenAll(work.Faces.Select(f => f.Done.Task)).WaitAsync(ct).ConfigureAwait(false); }
            catch { work.Dispose(); throw; }
            await SendAsync(work, ct).ConfigureAwait(false);
        }
    }
}

/// <summary>The leak audit's verdict on one face.</summary>
public sealed record FaceAudit(double SimilarityToSource, double? SimilarityToTarget, AuditAction Action, double? SimilarityAfterRetry = null);

public enum AuditAction
{
    /// <summary>Below the same-person threshold at the first attempt.</summary>
    Passed,
    /// <summary>Recognisable at first, below the threshold after the stage's stronger identity push.</summary>
    Reinforced,
    /// <summary>Still recognisable (or the stage has no second attempt): its region was blurred.</summary>
    Blurred,
}

/// <summary>
/// Fail-closed identity audit between the face stage and paste: the independent recognizer (never the E_id the
/// stage maps with) compares every output face with the source face of the same frame. A face at or above the
/// same-person threshold is drawn once more with a stronger identity push (<see cref="IFaceStage.Reinforce"/>) and
/// blurred if it still matches. Works on groups of frames: their faces are embedded together and the second
/// attempts go to the device as one batch. No frame leaves before its faces are audited.
/// </summary>
internal sealed class AuditStage(IFaceStage stage, OnnxFaceRecognizer recognizer, double threshold, DeviceExecutor device,
    PipelineContext context, int batchSize, ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output) : Stage<FrameWork>(output)
{
    protected override async Task LoopAsync(CancellationToken ct)
    {
        var group = new List<FrameWork>();
        try
        {
            while (await input.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                var faces = 0;
                while (faces < batchSize && input.TryRead(out var work))
                {
                    group.Add(work);
                    faces += work.Faces.Count;
                }
                Audit(group, ct);
                foreach (var w in group.ToList())
                {
                    group.Remove(w);
                    await SendAsync(w, ct).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            foreach (var left in group) left.Dispose();
        }
    }

    private void Audit(List<FrameWork> group, CancellationToken ct)
    {
        var leaks = new List<(FaceJob Job, double Source, double? Target)>();
        foreach (var work in group)
            foreach (var face in work.Faces)
            {
                if (face.Handling == FaceHandling.FallbackBlurred || face.Output is null || face.Aligned is null || face.Landmarks is null) continue;
                ct.ThrowIfCancellationRequested();
                var (source, target) = Score(work.Frame.Image, face);
                if (source < threshold) face.Audit = new FaceAudit(Math.Round(source, 6), target, AuditAction.Passed);
                else leaks.Add((face, source, target));
            }
        if (leaks.Count == 0) return;

        var jobs = leaks.Select(l => l.Job).ToList();
        IReadOnlyList<Mat>? again = null;
        try
        {
            var crops = jobs.Select(j => j.ToCrop()).ToList();
            again = device.Run(() => stage.Reinforce(crops, ct));
            if (again != null) InferenceStage.Assign(stage, context, jobs, crops, again);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            context.Warn($"face stage '{stage.Name}' failed on a second attempt ({e.Message}); those faces were blurred");
            again = null;
        }
        var frames = group.ToDictionary(w => w.Frame.Index);
        foreach (var (job, source, target) in leaks)
        {
            double? after = null;
            if (again != null && job.Handling != FaceHandling.FallbackBlurred && job.Output != null)
                after = Score(frames[job.FrameIndex].Frame.Image, job).Source;
            var fixedNow = after is { } a && a < threshold;
            job.Audit = new FaceAudit(Math.Round(source, 6), target, fixedNow ? AuditAction.Reinforced : AuditAction.Blurred,
                after is { } v ? Math.Round(v, 6) : null);
            if (!fixedNow) job.FallBack();
        }
    }

    /// <summary>Cosine of the output face to the source face (both aligned by the same landmarks) and to the track's target.</summary>
    private (double Source, double? Target) Score(Mat frame, FaceJob face)
    {
        var src = recognizer.Embed(frame, face.Landmarks!);
        var outEmb = recognizer.Embed(face.Output!, face.Aligned!.TransformToCrop(face.Landmarks!));
        var target = stage.TargetEmbedding(face.TrackId) is { } t ? Math.Round(OnnxFaceRecognizer.Cosine(outEmb, t), 6) : (double?)null;
        return (OnnxFaceRecognizer.Cosine(outEmb, src), target);
    }
}
