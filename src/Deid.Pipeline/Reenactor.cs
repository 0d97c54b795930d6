using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;
using Deid.Faces;
using Deid.Media;
using OpenCvSharp;
using VideoWriter = Deid.Media.VideoWriter;

namespace Deid.Pipeline;

/// <summary>
/// <c>deid reenact</c>: one still photo animated by a driving clip (Nitzan et al. 2020: the still's E_id code, each
/// driving frame's E_attr code, M → w → G). The engine's pipeline stages, composed with two of reenactment's own:
/// decode → detect → reorder → track → <b>select the driving face</b> → align → batch → inference (the latent face
/// stage with the still as identity) → rejoin → <b>paste into the still</b> (or the head itself) → encode, on the
/// driving clip's timing and audio.
/// </summary>
public static class Reenactor
{
    public static async Task<ReenactReport> ReenactAsync(DeidEngine engine, string still, string driving, string output,
        ReenactOptions options, IProgress<PipelineProgress>? progress = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        Validate(options);
        // Everything checkable is checked before decoding: bad input leaves nothing behind.
        var info = MediaProbe.Probe(driving);
        OutputPaths.Validate(driving, output);
        if (OutputPaths.SameFile(still, output)) throw new PipelineException($"the output path is the still itself: {output}");
        ct.ThrowIfCancellationRequested();

        var clock = Stopwatch.StartNew();
        var context = new PipelineContext();
        var latentOptions = options.Latent with { Identity = still, TrackIdentities = new Dictionary<int, string>() };
        using var image = FaceImageService.ReadImage(still, "the still");
        var faces = engine.Faces(options.Detector, options.MinConfidence);
        var (face, count) = faces.Largest(image, $"the still {still}");
        var nets = engine.Latent(latentOptions.Weights);
        var recognizer = engine.Recognizer;
        var predictor = engine.Predictor;
        var cropSize = nets.ImageSize;

        int width = options.Width ?? image.Width, height = options.Height ?? image.Height;
        var warnings = new List<string>();
        if (nets.RandomParts.Count > 0)
            warnings.Add($"RANDOM WEIGHTS for {string.Join(", ", nets.RandomParts)}: the heads drawn are noise, not people; this run only exercises the pipeline");
        if (count > 1) warnings.Add($"the still {still}: {FaceImageService.Describe(face, count)} is used");
        if (options.Width is null && (width % 2 == 1 || height % 2 == 1))
        {
            warnings.Add($"the still is {width}x{height}; H.264 needs even sides, so the output is {width & ~1}x{height & ~1} (the last {(width % 2 == 1 ? "column" : "")}{(width % 2 == 1 && height % 2 == 1 ? " and " : "")}{(height % 2 == 1 ? "row" : "")} dropped)");
            width &= ~1;
            height &= ~1;
        }

        IdentityPhoto photo;
        using (var aligned = FaceImageService.Align(image, face, cropSize))
            photo = new IdentityPhoto(still, aligned.Crop.Clone(), aligned.TransformToCrop(face.Landmarks.Points));
        StillTarget? target = null;
        LatentFaceStage latent;
        try
        {
            // The paste target: the still at the output size, and its face aligned there.
            Mat picture;
            if (options.Width is null)
            {
                using var roi = new Mat(image, new Rect(0, 0, width, height));
                picture = roi.Clone();
            }
            else
            {
                picture = new Mat();
                Cv2.Resize(image, picture, new Size(width, height), 0, 0, InterpolationFlags.Area);
            }
            double sx = options.Width is null ? 1 : (double)width / image.Width, sy = options.Width is null ? 1 : (double)height / image.Height;
            var scaled = new FaceLandmarks(face.Landmarks.Points.Select(p => new Point2f((float)((p.X + 0.5) * sx - 0.5), (float)((p.Y + 0.5) * sy - 0.5))).ToArray());
            try
            {
                using var onPicture = new FfhqAligner(cropSize).Align(picture, scaled);
                var embedding = recognizer.Embed(image, face.Landmarks.Points);
                target = new StillTarget(picture, onPicture.Crop.Clone(), Affine.FromMat(onPicture.CropToFrame), embedding);
            }
            catch { picture.Dispose(); throw; }
            // The stage owns the photo's crop from here on.
            latent = new LatentFaceStage(nets, recognizer, latentOptions, options.BatchSize, [], new Dictionary<string, IdentityPhoto> { [still] = photo }, context.Warn);
        }
        catch
        {
            photo.AlignedCrop.Dispose();
            target?.Dispose();
            throw;
        }
        using var stage = new ReenactFaceStage(latent);
        using var ownedTarget = target!;
        var (outW, outH) = options.Crop ? (cropSize, cropSize) : (width, height);
        var report = new ReenactReport
        {
            Still = still, Driving = driving, Output = output, Crop = options.Crop, Width = outW, Height = outH, CropSize = cropSize,
            StillFace = face.Box, StillFaces = count, Detector = options.Detector,
            RandomWeights = nets.RandomParts, ModelFiles = nets.Files,
        };

        // The report owns its frame spool: the caller's to dispose once it is returned, ours until then.
        try
        {
            using var reader = new VideoReader(info);
            // The driving clip's timing and audio, the still's picture size, stored upright.
            using var writer = new VideoWriter(output, VideoWriterSpec.From(reader.Info) with { Width = outW, Height = outH, Rotation = 0 });
            using var record = new AnonymizeReport { Input = driving, Output = output, Stage = stage.Name, Detector = options.Detector, Mode = AnonymizeMode.Latent };
            var stats = new InferenceStats();
            var tracker = new FaceTracker(options.MaxMissingFrames);
            var finders = engine.Finders(options.Detector, options.MinConfidence);
            var workers = options.Workers;
            var batch = Math.Max(1, stage.BatchSize);

            var front = new FaceFront(depth: 2 * workers, orderedDepth: 4);
            var tracked = Channels.Bounded<FrameWork>(4);
            var selected = Channels.Bounded<FrameWork>(4);
            var aligned2 = Channels.Bounded<FrameWork>(4);
            var waitingCapacity = Math.Clamp(2 * batch, 8, 128);
            var waiting = Channels.Bounded<FrameWork>(waitingCapacity);
            var batches = Channels.Bounded<FaceBatch>(1);
            var rejoined = Channels.Bounded<FrameWork>(4);
            var pasted = Channels.Bounded<FrameWork>(4);
            var frameChannels = new[] { tracked, selected, aligned2, waiting, rejoined, pasted };

            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var token = cts.Token;
            var tasks = new List<Task>(front.Start(reader, finders, Task.FromResult(predictor), workers, tracker, tracked.Writer, token))
            {
                new DrivingSelectStage(options.DrivingTrack, tracked.Reader, selected.Writer).RunAsync(token),
                new AlignStage(new FfhqAligner(cropSize), context, selected.Reader, aligned2.Writer).RunAsync(token),
                new BatchStage(batch, waitingCapacity / 2, options.BatchTimeoutMs > 0 ? TimeSpan.FromMilliseconds(options.BatchTimeoutMs) : null, aligned2.Reader, waiting.Writer, batches.Writer).RunAsync(token),
                new InferenceStage(stage, engine.Executor, context, stats, batches.Reader).RunAsync(token),
                new RejoinStage(waiting.Reader, rejoined.Writer).RunAsync(token),
                new StillPasteStage(target, options.Crop, stage, recognizer, finders, predictor, report, context, rejoined.Reader, pasted.Writer).RunAsync(token),
                new EncodeStage(writer, record, progress, info.FrameCount, clock, pasted.Reader).RunAsync(token),
            };
            await StageGroup.RunAsync(tasks, cts, [.. front.FrameChannels, .. frameChannels], () => { while (batches.Reader.TryRead(out _)) { } }, ct).ConfigureAwait(false);

            // Known only now, without decoding twice: a clip with no usable driving face must not become a video of the still.
            if (report.Generated == 0)
                throw new PipelineException(options.DrivingTrack is int n
                    ? $"driving track {n} never appears in {driving} ({report.Frames} frames): nothing to reenact (see the track ids in a --report)"
                    : $"no face was found in the driving clip {driving} ({report.Frames} frames): nothing to reenact");
            writer.Complete();
            clock.Stop();

            report.Elapsed = clock.Elapsed;
            report.Inference = stats;
            foreach (var w in warnings) report.AddWarning(w);
            if (report.Held > 0) report.AddWarning($"the driving face was lost in {report.Held} frames: the last head was held there");
            if (report.NoHead > 0) report.AddWarning($"{report.NoHead} frames before the driving face first appeared show the still unchanged");
            if (tracker.TracksCreated > 1 && options.DrivingTrack is null)
                report.AddWarning($"the driving clip has {tracker.TracksCreated} face tracks; the largest was followed (pick one with --driving-track; the report names the track of every frame)");
            foreach (var w in context.Warnings) report.AddWarning(w);
            return report;
        }
        catch
        {
            report.Dispose();
            throw;
        }
    }

    public static void Validate(ReenactOptions o)
    {
        if (o.Width is int w && (w < 16 || w > 8192 || w % 2 != 0)) throw new PipelineException($"--size width must be even and between 16 and 8192 (got {w})");
        if (o.Height is int h && (h < 16 || h > 8192 || h % 2 != 0)) throw new PipelineException($"--size height must be even and between 16 and 8192 (got {h})");
        if (o.Width.HasValue != o.Height.HasValue) throw new PipelineException("--size needs both a width and a height");
        if (o.DrivingTrack is < 1) throw new PipelineException($"track ids start at 1 (got {o.DrivingTrack})");
        // The shared checks (workers, batch, smoothing, weights) as latent anonymization makes them.
        DeidEngine.ValidateOptions(new AnonymizeOptions
        {
            Mode = AnonymizeMode.Latent, Workers = o.Workers, BatchSize = o.BatchSize, BatchTimeoutMs = o.BatchTimeoutMs,
            MaxMissingFrames = o.MaxMissingFrames, Detector = o.Detector, MinConfidence = o.MinConfidence, Device = o.Device,
            Latent = o.Latent with { Identity = "seed:0", TrackIdentities = new Dictionary<int, string>() },
        });
    }

    /// <summary>"640x480" → (640, 480); both sides even.</summary>
    public static (int Width, int Height) ParseSize(string s)
    {
        var parts = s.Trim().ToLowerInvariant().Split('x');
        if (parts.Length != 2 || !int.TryParse(parts[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var w)
            || !int.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var h))
            throw new PipelineException($"--size '{s}' is not WIDTHxHEIGHT (e.g. 640x480)");
        if (w % 2 != 0 || h % 2 != 0) throw new PipelineException($"--size {w}x{h}: both sides must be even (H.264 with 4:2:0 chroma)");
        if (w < 16 || h < 16 || w > 8192 || h > 8192) throw new PipelineException($"--size {w}x{h}: each side must lie between 16 and 8192");
        return (w, h);
    }

}
