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
    public double Time;
    /// <summary>Smoothed 68 landmarks in frame pixels (null where the predictor failed).</summary>
    public Point2f[]? Landmarks;
    public FaceHandling Handling;
    public AlignedFace? Aligned;
    public Mat? Output;
    /// <summary>Completed once the face stage has handled (or failed) this face; the rejoin stage waits on it.</summary>
    public readonly TaskCompletionSource Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public FaceAudit? Audit;

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

    public FaceCrop ToCrop() => new(FrameIndex, TrackId, Aligned!.Crop, Time,
        Landmarks is null ? null : Aligned.TransformToCrop(Landmarks));

    public void Dispose() => ReleaseImages();
}

/// <summary>A decoded frame and everything the stages learn about it. Owns the frame and its face jobs.</summary>
internal sealed class FrameWork : IDisposable
{
    public required long Seq;
    public required VideoFrame Frame;
    /// <summary>The finder's boxes (frame coordinates), before landmarks.</summary>
    public IReadOnlyList<FaceBox> Boxes { get; set; } = [];
    /// <summary>The frame in grey where the finder reads grey: made once by the find stage for the finder and the
    /// shape predictor, released by the landmark stage.</summary>
    public Mat? Grey { get; set; }
    public List<FaceDetection> Detections { get; } = [];
    public List<FaceJob> Faces { get; } = [];
    private bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var f in Faces) f.Dispose();
        Grey?.Dispose();
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

/// <summary>
/// The front every video pipeline shares: decode → find (frame order) → landmarks (N workers) → reorder → track,
/// ending in the caller's tracked-frames channel. Owns the channels between its stages.
/// </summary>
internal sealed class FaceFront(int depth, int orderedDepth)
{
    private readonly Channel<FrameWork> _decoded = Channels.Bounded<FrameWork>(depth), _found = Channels.Bounded<FrameWork>(depth),
        _detected = Channels.Bounded<FrameWork>(depth), _ordered = Channels.Bounded<FrameWork>(orderedDepth);

    /// <summary>Its channels, for the stage group to drain on failure.</summary>
    public IReadOnlyList<Channel<FrameWork>> FrameChannels => [_decoded, _found, _detected, _ordered];

    /// <param name="predictor">The shape predictor, or its load still under way: only the landmark stage waits for it.</param>
    public IEnumerable<Task> Start(VideoReader reader, FaceFinderFactory finders, Task<DlibShapePredictor> predictor, int workers,
        FaceTracker tracker, ChannelWriter<FrameWork> tracked, CancellationToken token) =>
    [
        new DecodeStage(reader, _decoded.Writer).RunAsync(token),
        new FindStage(finders.CreateForStream, _decoded.Reader, _found.Writer).RunAsync(token),
        new LandmarkStage(workers, predictor, _found.Reader, _detected.Writer).RunAsync(token),
        new ReorderStage(_detected.Reader, _ordered.Writer).RunAsync(token),
        new TrackStage(tracker, _ordered.Reader, tracked).RunAsync(token),
    ];
}

internal static class Channels
{
    /// <summary>A bounded channel whose writers wait when it is full (memory stays flat).</summary>
    public static Channel<T> Bounded<T>(int capacity) =>
        Channel.CreateBounded<T>(new BoundedChannelOptions(Math.Max(1, capacity)) { FullMode = BoundedChannelFullMode.Wait });
}

/// <summary>
/// The face finder over the frames in decode order: a stream finder carries what it learnt from one frame to the
/// next, so this stage is one loop; the landmarks after it run in parallel.
/// </summary>
internal sealed class FindStage(Func<IFaceFinder> finderFactory, ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output)
    : Stage<FrameWork>(output)
{
    protected override async Task LoopAsync(CancellationToken ct)
    {
        using var finder = finderFactory();
        await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
        {
            try
            {
                if (finder.ReadsGrey) work.Grey = GreyImage.From(work.Frame.Image);
                work.Boxes = finder.Find(work.Grey ?? work.Frame.Image);
            }
            catch { work.Dispose(); throw; }
            await SendAsync(work, ct).ConfigureAwait(false);
        }
    }
}

/// <summary>N workers predicting the 68 landmarks of each found box (the shape predictor is shared and thread-safe); frames leave out of order.</summary>
internal sealed class LandmarkStage(int workers, Task<DlibShapePredictor> loading, ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output)
    : Stage<FrameWork>(output)
{
    protected override async Task LoopAsync(CancellationToken ct)
    {
        var predictor = await loading.WaitAsync(ct).ConfigureAwait(false);
        // One failing worker stops its siblings at once; otherwise they would keep feeding the reorder buffer
        // frames it can never release.
        using var local = CancellationTokenSource.CreateLinkedTokenSource(ct);
        await Task.WhenAll(Enumerable.Range(0, Math.Max(1, workers)).Select(_ => Task.Run(() => WorkerAsync(predictor, local), CancellationToken.None))).ConfigureAwait(false);
    }

    private async Task WorkerAsync(DlibShapePredictor predictor, CancellationTokenSource local)
    {
        var ct = local.Token;
        try
        {
            await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
            {
                try
                {
                    // The predictor reads grey levels only: the find stage's grey frame spares it converting a window per face.
                    work.Detections.AddRange(FrameDetector.Landmarks(predictor, work.Grey ?? work.Frame.Image, work.Boxes));
                    work.Grey?.Dispose();
                    work.Grey = null;
                }
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
}

/// <summary>Puts frames back in decode order after the parallel landmark workers.</summary>
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
            if (buffer.PendingCount > 0) throw new InvalidOperationException($"frame {buffer.NextSequence} never left the landmark workers");
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
                    FrameIndex = work.Frame.Index, TrackId = face.TrackId, Box = face.Box, Time = work.Frame.Time.TotalSeconds,
                    Landmarks = face.Landmarks, Handling = face.Handling,
                });
            await SendAsync(work, ct).ConfigureAwait(false);
        }
    }
}

/// <summary>
/// Aligns each face. A face whose FFHQ square is smaller than <paramref name="minFaceSide"/> frame pixels is blurred
/// instead: a generator would have to invent nearly every pixel of it (0 turns this off).
/// </summary>
internal sealed class AlignStage(FfhqAligner aligner, PipelineContext context, ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output,
    double minFaceSide = 0) : Stage<FrameWork>(output)
{
    public long TooSmall;

    protected override async Task LoopAsync(CancellationToken ct)
    {
        await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
        {
            foreach (var face in work.Faces)
            {
                if (face.Handling == FaceHandling.FallbackBlurred || face.Landmarks == null) { face.Handling = FaceHandling.FallbackBlurred; continue; }
                try
                {
                    if (minFaceSide > 0)
                    {
                        var q = FfhqAligner.Quad(new FaceLandmarks(face.Landmarks));
                        var side = Math.Sqrt((q[3].X - q[0].X) * (q[3].X - q[0].X) + (q[3].Y - q[0].Y) * (q[3].Y - q[0].Y));
                        if (side < minFaceSide)
                        {
                            Interlocked.Increment(ref TooSmall);
                            face.Handling = FaceHandling.FallbackBlurred;
                            continue;
                        }
                    }
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
/// Puts processed crops back; whatever could not be processed gets its last known region, enlarged ×1.6,
/// blurred, so no known face ever leaves the pipeline as it came in. A damaged picture (decoder errors, or predicted
/// from one since the last key frame) is then blurred whole: concealment leaves faces that people still see (ghosted
/// outlines, smeared features) but a detector trained on clean faces misses, so "no face found" means nothing there.
/// </summary>
internal sealed class PasteStage(BlendMode blend, bool smooth, PipelineContext context, ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output)
    : Stage<FrameWork>(output)
{
    public const float FallbackScale = 1.6f;

    protected override async Task LoopAsync(CancellationToken ct)
    {
        using var buffer = new PasteBuffer();
        await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
        {
            try { Paste(work, buffer); }
            catch { work.Dispose(); throw; }
            await SendAsync(work, ct).ConfigureAwait(false);
        }
    }

    private void Paste(FrameWork work, PasteBuffer buffer)
    {
        var frame = work.Frame.Image;
        foreach (var face in work.Faces)
        {
            if (face.Handling != FaceHandling.FallbackBlurred && face.Aligned != null && face.Output != null)
            {
                try { FacePaster.Paste(frame, face.Aligned, face.Output, blend, buffer, smooth); }
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
        if (work.Frame.Damaged) FaceObfuscation.Blur(frame);
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
                    work.Faces.Select(f => new FaceRecord(f.TrackId, f.Box, f.Handling, f.Audit)).ToArray(), work.Frame.Damaged));
            }
            done++;
            progress?.Report(new PipelineProgress(done, totalFrames, done / Math.Max(1e-9, clock.Elapsed.TotalSeconds)));
        }
    }
}

/// <summary>Runs a pipeline's stage tasks together: the first to fail stops the others; what is left in flight is disposed.</summary>
internal static class StageGroup
{
    /// <summary>
    /// Awaits every task; a fault cancels <paramref name="cts"/> at once. Then disposes the frames left in
    /// <paramref name="frameChannels"/>, and throws: the user's cancellation first, then the first real error.
    /// </summary>
    public static async Task RunAsync(IReadOnlyList<Task> tasks, CancellationTokenSource cts, IEnumerable<Channel<FrameWork>> frameChannels,
        Action drainOthers, CancellationToken userCt)
    {
        foreach (var t in tasks)
            _ = t.ContinueWith(_ => { try { cts.Cancel(); } catch (ObjectDisposedException) { } },
                CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

        try { await Task.WhenAll(tasks).ConfigureAwait(false); }
        catch (Exception) { /* inspected below */ }

        foreach (var ch in frameChannels)
            while (ch.Reader.TryRead(out var left)) left.Dispose();
        drainOthers();

        // A user's Ctrl-C wins over whatever the interrupted stages complained about.
        userCt.ThrowIfCancellationRequested();
        var all = tasks.Where(t => t.IsFaulted).SelectMany(t => t.Exception!.Flatten().InnerExceptions).ToList();
        var errors = all.Where(e => e is not OperationCanceledException and not ChannelClosedException).ToList();
        if (errors.Count > 0) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(errors[0]).Throw();
        if (tasks.Any(t => !t.IsCompletedSuccessfully))
            throw new PipelineException("the pipeline stopped unexpectedly" + (all.FirstOrDefault() is { } first ? $": {first.Message}" : ""), all.FirstOrDefault());
    }
}
