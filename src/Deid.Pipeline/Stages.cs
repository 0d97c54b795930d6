using System.Threading.Channels;
using Deid.Faces;
using Deid.Media;
using OpenCvSharp;
using VideoWriter = Deid.Media.VideoWriter;

namespace Deid.Pipeline;

/// <summary>One face of one frame on its way through align → face stage → paste. Owns its Mats.</summary>
internal sealed class FaceJob : IDisposable
{
    public required long FrameIndex;
    public required int TrackId;
    public required FaceBox Box;
    public Point2f[]? Landmarks;
    public FaceHandling Handling;
    public AlignedFace? Aligned;
    public Mat? Output;
    public bool Processed;

    public bool NeedsStage => Aligned != null && Handling != FaceHandling.FallbackBlurred;

    /// <summary>Disposes the crop and the stage's output exactly once (the output may be the crop itself).</summary>
    public void ReleaseImages()
    {
        if (Output != null && !ReferenceEquals(Output, Aligned?.Crop)) Output.Dispose();
        Output = null;
        Aligned?.Dispose();
        Aligned = null;
    }

    public void FallBack()
    {
        ReleaseImages();
        Handling = FaceHandling.FallbackBlurred;
    }

    public void Dispose() => ReleaseImages();
}

/// <summary>A decoded frame and everything the stages learn about it. Owns the frame and its face jobs.</summary>
internal sealed class FrameWork : IDisposable
{
    public required long Seq;
    public required VideoFrame Frame;
    public List<FaceDetection> Detections { get; } = [];
    public List<FaceJob> Faces { get; } = [];
    private bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var f in Faces) f.Dispose();
        Frame.Dispose();
    }
}

/// <summary>What every stage shares: the report's warnings, safe to add from any worker.</summary>
internal sealed class PipelineContext
{
    private readonly HashSet<string> _warnings = [];
    private readonly List<string> _ordered = [];

    public void Warn(string message)
    {
        lock (_warnings)
            if (_warnings.Add(message)) _ordered.Add(message);
    }

    public IReadOnlyList<string> Warnings { get { lock (_warnings) return _ordered.ToArray(); } }
}

/// <summary>
/// Shared plumbing: completes the output channel when the loop ends, with the error when it fails, so the
/// next stage sees the end or the fault.
/// </summary>
internal abstract class Stage<TOut>(ChannelWriter<TOut> output)
{
    protected ChannelWriter<TOut> Output { get; } = output;

    public Task RunAsync(CancellationToken ct) => Task.Run(async () =>
    {
        try
        {
            await LoopAsync(ct).ConfigureAwait(false);
            Output.TryComplete();
        }
        catch (Exception e)
        {
            Output.TryComplete(e);
            throw;
        }
    }, CancellationToken.None);

    protected abstract Task LoopAsync(CancellationToken ct);

    /// <summary>Hands an item on; if that fails the item is still ours and is disposed here.</summary>
    protected async Task SendAsync<T>(T item, CancellationToken ct) where T : TOut, IDisposable
    {
        try { await Output.WriteAsync(item, ct).ConfigureAwait(false); }
        catch { item.Dispose(); throw; }
    }
}

internal sealed class DecodeStage(VideoReader reader, ChannelWriter<FrameWork> output) : Stage<FrameWork>(output)
{
    protected override async Task LoopAsync(CancellationToken ct)
    {
        long seq = 0;
        foreach (var frame in reader.ReadFrames(ct))
        {
            ct.ThrowIfCancellationRequested();
            await SendAsync(new FrameWork { Seq = seq++, Frame = frame }, ct).ConfigureAwait(false);
        }
    }
}

/// <summary>N workers, one face finder each (dlib's HOG is not thread-safe), one shared shape predictor.</summary>
internal sealed class DetectStage(int workers, Func<IFaceFinder> detectorFactory, DlibShapePredictor predictor,
    ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output) : Stage<FrameWork>(output)
{
    protected override async Task LoopAsync(CancellationToken ct)
    {
        // One failing worker stops its siblings at once; otherwise they would keep feeding the reorder buffer
        // frames it can never release.
        using var local = CancellationTokenSource.CreateLinkedTokenSource(ct);
        await Task.WhenAll(Enumerable.Range(0, workers).Select(_ => Task.Run(() => WorkerAsync(local), CancellationToken.None))).ConfigureAwait(false);
    }

    private async Task WorkerAsync(CancellationTokenSource local)
    {
        var ct = local.Token;
        try
        {
            using var detector = detectorFactory();
            await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
            {
                try { Detect(detector, work); }
                catch { work.Dispose(); throw; }
                await SendAsync(work, ct).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            local.Cancel();
            throw;
        }
    }

    private void Detect(IFaceFinder detector, FrameWork work) =>
        work.Detections.AddRange(FrameDetector.Detect(detector, predictor, work.Frame.Image));
}

/// <summary>Puts frames back in decode order after the parallel detectors.</summary>
internal sealed class ReorderStage(ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output) : Stage<FrameWork>(output)
{
    protected override async Task LoopAsync(CancellationToken ct)
    {
        var buffer = new ReorderBuffer<FrameWork>();
        try
        {
            await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
            {
                var ready = buffer.Add(work.Seq, work);
                for (var i = 0; i < ready.Count; i++)
                {
                    try { await SendAsync(ready[i], ct).ConfigureAwait(false); }
                    catch { foreach (var r in ready.Skip(i + 1)) r.Dispose(); throw; }
                }
            }
            if (buffer.PendingCount > 0) throw new InvalidOperationException($"frame {buffer.NextSequence} never left the detectors");
        }
        finally
        {
            foreach (var left in buffer.Drain()) left.Dispose();
        }
    }
}

internal sealed class TrackStage(FaceTracker tracker, ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output) : Stage<FrameWork>(output)
{
    protected override async Task LoopAsync(CancellationToken ct)
    {
        await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
        {
            foreach (var face in tracker.Update(work.Detections, work.Frame.Time.TotalSeconds))
                work.Faces.Add(new FaceJob
                {
                    FrameIndex = work.Frame.Index, TrackId = face.TrackId, Box = face.Box,
                    Landmarks = face.Landmarks, Handling = face.Handling,
                });
            await SendAsync(work, ct).ConfigureAwait(false);
        }
    }
}

internal sealed class AlignStage(FfhqAligner aligner, PipelineContext context, ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output)
    : Stage<FrameWork>(output)
{
    protected override async Task LoopAsync(CancellationToken ct)
    {
        await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
        {
            foreach (var face in work.Faces)
            {
                if (face.Handling == FaceHandling.FallbackBlurred || face.Landmarks == null) { face.Handling = FaceHandling.FallbackBlurred; continue; }
                try
                {
                    face.Aligned = aligner.Align(work.Frame.Image, new FaceLandmarks(face.Landmarks));
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    context.Warn($"a face could not be aligned and was blurred instead ({e.Message})");
                    face.FallBack();
                }
            }
            await SendAsync(work, ct).ConfigureAwait(false);
        }
    }
}

/// <summary>
/// Batches crops across frames for the face stage: a batch goes as soon as it holds B crops, or when the
/// stream ends. Frames wait here until all their crops are back; when faces are sparse, a cap on waiting
/// frames flushes a short batch so memory stays bounded.
/// </summary>
internal sealed class FaceBatchStage(IFaceStage stage, int maxPendingFrames, PipelineContext context,
    ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output) : Stage<FrameWork>(output)
{
    private readonly Queue<FrameWork> _pending = new();
    private readonly List<FaceJob> _unprocessed = [];
    public List<int> BatchSizes { get; } = [];

    protected override async Task LoopAsync(CancellationToken ct)
    {
        var batchSize = Math.Max(1, stage.BatchSize);
        try
        {
            await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
            {
                _pending.Enqueue(work);
                _unprocessed.AddRange(work.Faces.Where(f => f.NeedsStage));
                while (_unprocessed.Count >= batchSize) ProcessBatch(batchSize, ct);
                if (_pending.Count > maxPendingFrames)
                    while (_unprocessed.Count > 0) ProcessBatch(batchSize, ct);
                await EmitReadyAsync(ct).ConfigureAwait(false);
            }
            while (_unprocessed.Count > 0) ProcessBatch(batchSize, ct);
            await EmitReadyAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            while (_pending.TryDequeue(out var left)) left.Dispose();
        }
    }

    private void ProcessBatch(int batchSize, CancellationToken ct)
    {
        var jobs = _unprocessed.Take(batchSize).ToList();
        _unprocessed.RemoveRange(0, jobs.Count);
        BatchSizes.Add(jobs.Count);
        try
        {
            var crops = jobs.Select(j => new FaceCrop(j.FrameIndex, j.TrackId, j.Aligned!.Crop)).ToList();
            var outputs = stage.Process(crops, ct);
            if (outputs.Count != jobs.Count)
            {
                foreach (var o in outputs) if (!crops.Any(c => ReferenceEquals(c.Crop, o))) o.Dispose();
                throw new InvalidOperationException($"returned {outputs.Count} crops for {jobs.Count}");
            }
            for (var i = 0; i < jobs.Count; i++)
            {
                var o = outputs[i];
                var crop = jobs[i].Aligned!.Crop;
                jobs[i].Output = o;
                if (o.Width != crop.Width || o.Height != crop.Height || o.Type() != crop.Type())
                {
                    context.Warn($"face stage '{stage.Name}' returned a {o.Width}x{o.Height} crop for a {crop.Width}x{crop.Height} one; that face was blurred instead");
                    jobs[i].FallBack();
                }
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            context.Warn($"face stage '{stage.Name}' failed ({e.Message}); its faces were blurred instead");
            foreach (var j in jobs) j.FallBack();
        }
        finally
        {
            foreach (var j in jobs) j.Processed = true;
        }
    }

    private async Task EmitReadyAsync(CancellationToken ct)
    {
        while (_pending.TryPeek(out var head) && head.Faces.All(f => !f.NeedsStage || f.Processed))
            await SendAsync(_pending.Dequeue(), ct).ConfigureAwait(false);
    }
}

/// <summary>
/// Puts processed crops back; whatever could not be processed gets its last known region, enlarged ×1.6,
/// blurred, so no known face ever leaves the pipeline as it came in.
/// </summary>
internal sealed class PasteStage(BlendMode blend, PipelineContext context, ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output)
    : Stage<FrameWork>(output)
{
    public const float FallbackScale = 1.6f;

    protected override async Task LoopAsync(CancellationToken ct)
    {
        await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
        {
            try { Paste(work); }
            catch { work.Dispose(); throw; }
            await SendAsync(work, ct).ConfigureAwait(false);
        }
    }

    private void Paste(FrameWork work)
    {
        var frame = work.Frame.Image;
        foreach (var face in work.Faces)
        {
            if (face.Handling != FaceHandling.FallbackBlurred && face.Aligned != null && face.Output != null)
            {
                try { FacePaster.Paste(frame, face.Aligned, face.Output, blend); }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    context.Warn($"a face could not be pasted back and was blurred instead ({e.Message})");
                    face.Handling = FaceHandling.FallbackBlurred;
                }
            }
            else
            {
                face.Handling = FaceHandling.FallbackBlurred;
            }
            face.ReleaseImages();
            if (face.Handling == FaceHandling.FallbackBlurred)
            {
                var region = face.Box.Scale(FallbackScale).Clip(frame.Width, frame.Height).ToRect();
                if (region.Width > 1 && region.Height > 1) FaceObfuscation.BlurRegion(frame, region);
            }
        }
    }
}

internal sealed class EncodeStage(VideoWriter writer, AnonymizeReport report, IProgress<PipelineProgress>? progress, long? totalFrames,
    System.Diagnostics.Stopwatch clock, ChannelReader<FrameWork> input) : Stage<FrameWork>(Channel.CreateUnbounded<FrameWork>().Writer)
{
    protected override async Task LoopAsync(CancellationToken ct)
    {
        long done = 0;
        await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
        {
            using (work)
            {
                writer.Write(work.Frame);
                report.AddFrame(new FrameRecord(work.Frame.Index, work.Frame.Time.TotalSeconds,
                    work.Faces.Select(f => new FaceRecord(f.TrackId, f.Box, f.Handling)).ToArray()));
            }
            done++;
            progress?.Report(new PipelineProgress(done, totalFrames, done / Math.Max(1e-9, clock.Elapsed.TotalSeconds)));
        }
    }
}
