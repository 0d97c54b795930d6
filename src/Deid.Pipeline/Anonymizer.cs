using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;
using Deid.Faces;
using Deid.Media;

namespace Deid.Pipeline;

/// <summary>
/// decode → detect (N workers) → reorder → track → align → face stage (batched) → paste → encode, joined by
/// bounded channels so memory stays flat however long the clip. A fault or cancellation anywhere stops every
/// stage, disposes every frame still in flight and leaves no output (the writer is disposed without Complete).
/// </summary>
public static class Anonymizer
{
    public static async Task<AnonymizeReport> RunAsync(string input, string output, AnonymizeOptions options,
        IProgress<PipelineProgress>? progress = null, CancellationToken ct = default)
    {
        ValidateOptions(options);
        // Everything that can be checked before decoding is checked first, so bad input never leaves a file behind.
        var info = MediaProbe.Probe(input);
        OutputPaths.Validate(input, output);
        CheckDevice(options.Device);
        ct.ThrowIfCancellationRequested();

        var clock = Stopwatch.StartNew();
        using var stage = FaceStages.Create(options);
        using var predictor = DlibShapePredictor.Load();
        using var finders = new FaceFinderFactory(options.Detector, options.ModelDir, options.Device, options.MinConfidence);
        using var reader = new VideoReader(input);
        using var writer = new VideoWriter(output, reader.Info);
        var report = new AnonymizeReport
        {
            Input = input, Output = output, Stage = stage.Name, Detector = options.Detector,
            MinConfidence = options.Detector == DetectorKind.Hog ? null : options.MinConfidence,
        };
        var context = new PipelineContext();
        var tracker = new FaceTracker(options.MaxMissingFrames);
        var aligner = new FfhqAligner(options.CropSize);
        var builtIn = stage is BlurStage or PixelateStage or PassthroughStage;
        // Obfuscated crops must not be colour-matched back towards the original face; real replacements should be.
        var blend = builtIn ? BlendMode.Feather : BlendMode.ColorMatch;
        var workers = options.Workers;

        var decoded = Bounded(2 * workers);
        var detected = Bounded(2 * workers);
        var ordered = Bounded(4);
        var tracked = Bounded(4);
        var aligned = Bounded(4);
        var processed = Bounded(4);
        var pasted = Bounded(4);
        var channels = new[] { decoded, detected, ordered, tracked, aligned, processed, pasted };

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var token = cts.Token;
        var tasks = new List<Task>
        {
            new DecodeStage(reader, decoded.Writer).RunAsync(token),
            new DetectStage(workers, finders.Create, predictor, decoded.Reader, detected.Writer).RunAsync(token),
            new ReorderStage(detected.Reader, ordered.Writer).RunAsync(token),
            new TrackStage(tracker, ordered.Reader, tracked.Writer).RunAsync(token),
            new AlignStage(aligner, context, tracked.Reader, aligned.Writer).RunAsync(token),
            new FaceBatchStage(stage, Math.Clamp(2 * stage.BatchSize, 8, 64), context, aligned.Reader, processed.Writer).RunAsync(token),
            new PasteStage(blend, context, processed.Reader, pasted.Writer).RunAsync(token),
            new EncodeStage(writer, report, progress, info.FrameCount, clock, pasted.Reader).RunAsync(token),
        };
        // The first stage to fail stops all the others at once.
        foreach (var t in tasks)
            _ = t.ContinueWith(_ => { try { cts.Cancel(); } catch (ObjectDisposedException) { } },
                CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

        try { await Task.WhenAll(tasks).ConfigureAwait(false); }
        catch (Exception) { /* inspected below */ }

        foreach (var ch in channels)
            while (ch.Reader.TryRead(out var left)) left.Dispose();

        // A user's Ctrl-C wins over whatever the interrupted stages complained about.
        ct.ThrowIfCancellationRequested();
        var errors = tasks.Where(t => t.IsFaulted).SelectMany(t => t.Exception!.Flatten().InnerExceptions)
            .Where(e => e is not OperationCanceledException and not ChannelClosedException).ToList();
        if (errors.Count > 0) ExceptionDispatchInfo.Capture(errors[0]).Throw();
        if (tasks.Any(t => !t.IsCompletedSuccessfully))
        {
            var first = tasks.Where(t => t.IsFaulted).SelectMany(t => t.Exception!.Flatten().InnerExceptions).FirstOrDefault();
            throw new PipelineException("the pipeline stopped unexpectedly" + (first != null ? $": {first.Message}" : ""), first);
        }

        writer.Complete();
        clock.Stop();

        report.Tracks = tracker.TracksCreated;
        report.Elapsed = clock.Elapsed;
        if (report.Faces == 0)
            report.AddWarning($"no faces were detected in {report.Frames} frames: the video was passed through unchanged (re-encoded)");
        if (report.FallbackBlurred > 0)
            report.AddWarning($"{report.FallbackBlurred} face instances could not be {(builtIn ? "processed" : "replaced")} and were blurred instead");
        foreach (var w in context.Warnings) report.AddWarning(w);
        return report;
    }

    private static Channel<FrameWork> Bounded(int capacity) =>
        Channel.CreateBounded<FrameWork>(new BoundedChannelOptions(Math.Max(1, capacity))
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = false,
            SingleWriter = false,
        });

    private static void ValidateOptions(AnonymizeOptions o)
    {
        if (o.Workers is < 1 or > 256) throw new PipelineException($"workers must be between 1 and 256 (got {o.Workers})");
        if (o.BatchSize is < 1 or > 1024) throw new PipelineException($"batch size must be between 1 and 1024 (got {o.BatchSize})");
        if (o.CropSize is < 64 or > 2048) throw new PipelineException($"crop size must be between 64 and 2048 (got {o.CropSize})");
        if (o.MaxMissingFrames is < 0 or > 10000) throw new PipelineException($"max missing frames must be between 0 and 10000 (got {o.MaxMissingFrames})");
        if (!Enum.IsDefined(o.Mode)) throw new PipelineException($"unknown mode {o.Mode}");
        if (!Enum.IsDefined(o.Detector)) throw new PipelineException($"unknown detector {o.Detector}");
        if (!(o.MinConfidence is > 0 and < 1)) throw new PipelineException($"min confidence must lie strictly between 0 and 1 (got {o.MinConfidence})");
    }

    /// <summary>Fails early and clearly when CUDA is asked for but cannot be used.</summary>
    public static void CheckDevice(string device)
    {
        try { Deid.Models.DeviceSelection.Resolve(device); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            throw new PipelineException(e.Message, e);
        }
    }
}
