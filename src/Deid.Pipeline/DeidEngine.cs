using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;
using Deid.Faces;
using Deid.Media;
using Deid.Models;
using Deid.Models.FaceApi;
using Deid.Models.Weights;
using OpenCvSharp;
using VideoWriter = Deid.Media.VideoWriter;

namespace Deid.Pipeline;

/// <summary>
/// Everything loaded to anonymize: the device and its one executor, the shape predictor, the SSD detector, the
/// independent recognizer and latent mode's networks, each loaded once on first use and reused for every clip the
/// engine is given (a batch of clips pays model start-up once). Jobs are described by plain
/// <see cref="AnonymizeOptions"/>; clips run one after another or concurrently (device work is serialised by the
/// executor).
/// </summary>
public sealed class DeidEngine : IDisposable
{
    private readonly object _load = new();
    private DlibShapePredictor? _predictor;
    private SsdMobilenetv1? _ssd;
    private OnnxFaceRecognizer? _recognizer;
    private readonly Dictionary<LatentWeightsSpec, LatentNetworks> _latent = [];
    private int _loads;
    private bool _disposed;

    /// <param name="device">cpu, cuda, cuda:N or auto; every job of this engine runs there.</param>
    /// <param name="modelDir">The model store (default <c>$DEID_MODELS</c> or models/).</param>
    public DeidEngine(string device = "cpu", string? modelDir = null)
    {
        DeviceName = device;
        ModelDir = modelDir;
        // Touching torch loads libtorch (about a second of a short run): a CPU engine only does so when a network is
        // first needed, so blur and pixelate runs with the HOG detector never load it. Any other device is checked now.
        if (IsCpu(device)) _device = new(() => DeviceSelection.Resolve("cpu"));
        else
        {
            try { var resolved = DeviceSelection.Resolve(device); _device = new(resolved); }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException) { throw new PipelineException(e.Message, e); }
        }
    }

    private readonly Lazy<TorchSharp.torch.Device> _device;

    private static bool IsCpu(string? device) => (device ?? "cpu").Trim().Equals("cpu", StringComparison.OrdinalIgnoreCase);

    public string DeviceName { get; }
    public TorchSharp.torch.Device Device => _device.Value;
    public string? ModelDir { get; }
    public DeviceExecutor Executor { get; } = new();

    /// <summary>How many networks or model files this engine has loaded so far (each at most once).</summary>
    public int Loads => Volatile.Read(ref _loads);

    private T Once<T>(ref T? slot, Func<T> load) where T : class
    {
        lock (_load)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (slot != null) return slot;
            slot = load();
            _loads++;
            return slot;
        }
    }

    public DlibShapePredictor Predictor => Once(ref _predictor, () => DlibShapePredictor.Load());
    public SsdMobilenetv1 Ssd => Once(ref _ssd, () => FaceFinderFactory.LoadSsd(ModelDir, DeviceName));

    public OnnxFaceRecognizer Recognizer => Once(ref _recognizer, () =>
    {
        var path = Path.Combine(new ModelStore(ModelDir).Root, OnnxFaceRecognizer.RelativePath);
        try { return OnnxFaceRecognizer.Load(path); }
        catch (FileNotFoundException e) { throw new PipelineException($"the independent face recognizer is missing ({e.FileName}); run `deid models fetch`", e); }
    });

    /// <summary>Latent mode's networks for this weights spec, loaded once.</summary>
    /// <exception cref="PipelineException">a file is missing (and random weights are off) or does not fit its network.</exception>
    public LatentNetworks Latent(LatentWeightsSpec spec)
    {
        spec = spec with { ModelsDir = spec.ModelsDir ?? ModelDir };
        lock (_load)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_latent.TryGetValue(spec, out var nets)) return nets;
            try { nets = Executor.Run(() => LatentNetworks.Load(spec, Device)); }
            catch (WeightsException e) { throw new PipelineException(e.Message, e); }
            _latent[spec] = nets;
            _loads++;
            return nets;
        }
    }

    public FaceFinderFactory Finders(DetectorKind kind, float minConfidence) =>
        new(kind, kind == DetectorKind.Hog ? null : Ssd, Executor, minConfidence);

    public FaceImageService Faces(DetectorKind kind, float minConfidence) => new(Finders(kind, minConfidence), Predictor);

    /// <summary>
    /// decode → detect (N workers) → reorder → track → align → batch → inference (device) → rejoin → audit → paste →
    /// encode, joined by bounded channels so memory stays flat however long the clip. A fault or cancellation anywhere
    /// stops every stage, disposes every frame in flight and leaves no output (the writer is disposed without Complete).
    /// </summary>
    /// <param name="stage">A face stage to use instead of the one <paramref name="options"/> names (tests, benchmarks); the caller keeps ownership.</param>
    public async Task<AnonymizeReport> AnonymizeAsync(string input, string output, AnonymizeOptions options,
        IProgress<PipelineProgress>? progress = null, CancellationToken ct = default, IFaceStage? stage = null)
    {
        ValidateOptions(options);
        // Everything that can be checked before decoding is checked first, so bad input never leaves a file behind.
        var info = MediaProbe.Probe(input);
        OutputPaths.Validate(input, output);
        if (!SameDevice(options.Device))
            throw new PipelineException($"this engine runs on {DeviceName}; the job asks for {options.Device}");
        ct.ThrowIfCancellationRequested();

        var clock = Stopwatch.StartNew();
        var context = new PipelineContext();
        // The shape predictor (a third of a second to load) loads while the first frames are decoded and searched;
        // the landmark stage is the first to need it. A file that is missing is still reported before any decoding.
        var loaded = Volatile.Read(ref _predictor);
        if (loaded is null && !File.Exists(DlibShapePredictor.DefaultPath())) _ = Predictor;
        var predictor = loaded is not null ? Task.FromResult(loaded) : Task.Run(() => Predictor, ct);
        var finders = Finders(options.Detector, options.MinConfidence);
        var latent = options.Mode == AnonymizeMode.Latent && stage is null ? PrepareLatent(info, options, finders, context, ct) : null;
        var ownedStage = stage is null ? latent?.Stage ?? FaceStages.Create(options) : null;
        var faceStage = stage ?? ownedStage!;
        AnonymizeReport? report = null;
        var succeeded = false;
        try
        {
            var audit = options.Audit ?? faceStage.ReplacesIdentity;
            var recognizer = audit ? Recognizer : null;
            var cropSize = latent?.Networks.ImageSize ?? options.CropSize ?? faceStage.CropSize;

            using var reader = new VideoReader(info);
            using var writer = new VideoWriter(output, reader.Info, options.Output);
            report = new AnonymizeReport
            {
                Input = input, Output = output, Stage = faceStage.Name, Detector = options.Detector, Mode = options.Mode,
                MinConfidence = options.Detector == DetectorKind.Hog ? null : options.MinConfidence,
            };
            var stats = new InferenceStats();
            var tracker = new FaceTracker(options.MaxMissingFrames);
            // A crop that is only blurred or pixelated needs no cubic resampling.
            var aligner = new FfhqAligner(cropSize, sharp: faceStage.ReplacesIdentity);
            // Obfuscated crops must not be colour-matched back towards the original face; real replacements should be.
            var blend = faceStage.ReplacesIdentity ? BlendMode.ColorMatch : BlendMode.Feather;
            var workers = options.Workers;
            var batch = Math.Max(1, faceStage.BatchSize);

            var (hop, waitingCapacity) = Capacities(options, info, batch);
            var front = new FaceFront(depth: Math.Min(2 * workers, 2 * hop), orderedDepth: hop);
            var tracked = Channels.Bounded<FrameWork>(hop);
            var aligned = Channels.Bounded<FrameWork>(hop);
            // Enough frames wait behind a batch for it to fill at one face per frame, and for the next to fill meanwhile.
            var waiting = Channels.Bounded<FrameWork>(waitingCapacity);
            var batches = Channels.Bounded<FaceBatch>(1);
            var rejoined = Channels.Bounded<FrameWork>(hop);
            var audited = Channels.Bounded<FrameWork>(hop);
            var pasted = Channels.Bounded<FrameWork>(hop);
            var frameChannels = new[] { tracked, aligned, waiting, rejoined, audited, pasted };

            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var token = cts.Token;
            var alignStage = new AlignStage(aligner, context, tracked.Reader, aligned.Writer,
                minFaceSide: faceStage.ReplacesIdentity ? cropSize * MinFaceFraction : 0);
            var auditOut = audit ? audited : rejoined;
            var tasks = new List<Task>(front.Start(reader, finders, predictor, workers, tracker, tracked.Writer, token))
            {
                alignStage.RunAsync(token),
                new BatchStage(batch, waitingCapacity / 2, options.BatchTimeoutMs > 0 ? TimeSpan.FromMilliseconds(options.BatchTimeoutMs) : null, aligned.Reader, waiting.Writer, batches.Writer).RunAsync(token),
                new InferenceStage(faceStage, Executor, context, stats, batches.Reader).RunAsync(token),
                new RejoinStage(waiting.Reader, rejoined.Writer).RunAsync(token),
                new PasteStage(blend, faceStage.SmoothOutput, context, auditOut.Reader, pasted.Writer).RunAsync(token),
                new EncodeStage(writer, report, progress, info.FrameCount, clock, pasted.Reader).RunAsync(token),
            };
            if (audit)
                tasks.Add(new AuditStage(faceStage, recognizer!, OnnxFaceRecognizer.SamePersonThreshold, Executor, context, batch,
                    rejoined.Reader, audited.Writer).RunAsync(token));
            await StageGroup.RunAsync(tasks, cts, [.. front.FrameChannels, .. frameChannels], () => { while (batches.Reader.TryRead(out _)) { } }, ct).ConfigureAwait(false);

            writer.Complete();
            clock.Stop();

            report.Tracks = tracker.TracksCreated;
            report.Elapsed = clock.Elapsed;
            report.Inference = stats;
            report.Audited = audit;
            report.AuditThreshold = OnnxFaceRecognizer.SamePersonThreshold;
            report.Identities = faceStage.Identities;
            if (latent != null)
            {
                report.RandomWeights = latent.Networks.RandomParts;
                report.ModelFiles = latent.Networks.Files;
                foreach (var w in latent.Warnings) report.AddWarning(w);
            }
            if (report.DamagedBlurred > 0)
                report.AddWarning($"{report.DamagedBlurred} of {report.Frames} frames had decoding errors (or were predicted from a damaged frame) and were blurred whole: a face in a damaged picture cannot be found reliably");
            if (report.Faces == 0 && report.DamagedBlurred < report.Frames)
                report.AddWarning($"no faces were detected in {report.Frames} frames: the {(report.DamagedBlurred > 0 ? "undamaged frames were" : "video was")} passed through unchanged (re-encoded)");
            if (alignStage.TooSmall > 0)
                report.AddWarning($"{alignStage.TooSmall} face instances were too small for the generator's {cropSize} px crop (under {cropSize * MinFaceFraction:F0} px) and were blurred instead");
            if (report.FallbackBlurred > 0)
                report.AddWarning($"{report.FallbackBlurred} face instances could not be {(faceStage.ReplacesIdentity ? "replaced" : "processed")} and were blurred instead");
            if (report.LeaksFound > 0)
                report.AddWarning($"the leak audit found {report.LeaksFound} output faces still recognisable as their source: {report.LeaksFixed} fixed by a second attempt, {report.LeaksBlurred} blurred");
            foreach (var w in writer.Warnings) report.AddWarning(w);
            foreach (var w in context.Warnings) report.AddWarning(w);
            succeeded = true;
            return report;
        }
        finally
        {
            // a failed run's report never reaches the caller: its frame spool is released here
            if (!succeeded) report?.Dispose();
            ownedStage?.Dispose();
        }
    }

    /// <summary>
    /// Channel capacities from a byte budget for decoded frames in flight (<see cref="AnonymizeOptions.FrameMemoryMiB"/>),
    /// not from frame counts alone: a 4K frame is 25 MB, a 512² one 0.8 MB. Small frames keep the full depths (4 per hop,
    /// 2B behind the batcher); large ones get shallower channels, down to 1 per hop and 4 behind the batcher. The
    /// batcher's lag rule follows the capacity, so batches are still cut by counts only. The frames the stages hold in
    /// hand (<see cref="HeldFrames"/>) come out of the budget first: at 4K they are a third of all frames in flight.
    /// </summary>
    internal static (int Hop, int Waiting) Capacities(AnonymizeOptions options, VideoInfo info, int batch)
    {
        var frameBytes = Math.Max(1L, (long)info.Width * info.Height * 3);
        var budget = (int)Math.Clamp(options.FrameMemoryMiB * 1024L * 1024 / frameBytes, 1, 100_000);
        var frames = Math.Max(0, budget - HeldFrames(options.Workers));
        // About twelve hops hold frames; the frames behind the batcher get the other half of the budget.
        var hop = Math.Clamp(frames / 24, 1, 4);
        var waiting = Math.Clamp(Math.Min(2 * batch, frames / 2), 4, 128);
        return (hop, waiting);
    }

    /// <summary>
    /// Frames in flight outside the channels: one in the hands of each single stage (decode, find, reorder, track,
    /// align, batch, rejoin, audit, paste, encode), one per landmark worker, and one more the reorder buffer may be holding.
    /// </summary>
    internal static int HeldFrames(int workers) => 11 + workers;

    /// <summary>Below this fraction of the generator's crop size (frame pixels of the FFHQ square) a face is blurred, not replaced.</summary>
    public const double MinFaceFraction = 0.25;

    private sealed record LatentJob(LatentNetworks Networks, LatentFaceStage Stage, IReadOnlyList<string> Warnings);

    /// <summary>
    /// Loads the networks, finds and aligns every identity photo, and samples the clip's faces for the synthetic
    /// identities' margin check, all before the first frame is decoded: a job that cannot run fails here.
    /// </summary>
    private LatentJob PrepareLatent(VideoInfo info, AnonymizeOptions options, FaceFinderFactory finders, PipelineContext context, CancellationToken ct)
    {
        var o = options.Latent;
        var warnings = new List<string>();
        var nets = Latent(o.Weights);
        if (nets.RandomParts.Count > 0)
            warnings.Add($"RANDOM WEIGHTS for {string.Join(", ", nets.RandomParts)}: the output faces are noise, not people; this run only exercises the pipeline");
        var recognizer = Recognizer;
        var faces = new FaceImageService(finders, Predictor);

        var photos = new Dictionary<string, IdentityPhoto>();
        try
        {
            foreach (var spec in o.TrackIdentities.Values.Prepend(o.Identity).Distinct())
            {
                var (_, path) = LatentFaceStage.ParseIdentity(spec);
                if (path is null || photos.ContainsKey(path)) continue;
                ct.ThrowIfCancellationRequested();
                using var image = FaceImageService.ReadImage(path, "identity photo");
                var (face, count) = faces.Largest(image, $"the identity photo {path}");
                if (count > 1) warnings.Add($"identity photo {path}: {FaceImageService.Describe(face, count)} is used");
                using var aligned = FaceImageService.Align(image, face, nets.ImageSize);
                photos[path] = new IdentityPhoto(path, aligned.Crop.Clone(), aligned.TransformToCrop(face.Landmarks.Points));
            }

            var clipFaces = new List<float[]>();
            foreach (var at in FrameGrabber.EvenTimes(info, o.PrescanFrames))
            {
                ct.ThrowIfCancellationRequested();
                using var frame = FrameGrabber.Grab(info, at);
                if (frame is null) continue;
                foreach (var f in faces.Find(frame)) clipFaces.Add(recognizer.Embed(frame, f.Landmarks.Points));
            }
            var stage = new LatentFaceStage(nets, recognizer, o, options.BatchSize, clipFaces, photos, context.Warn);
            return new LatentJob(nets, stage, warnings);
        }
        catch
        {
            foreach (var p in photos.Values) p.AlignedCrop.Dispose();
            throw;
        }
    }

    private bool SameDevice(string device)
    {
        if (IsCpu(device) && IsCpu(DeviceName)) return true;
        try
        {
            var d = DeviceSelection.Resolve(device);
            return d.type == Device.type && d.index == Device.index;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException) { throw new PipelineException(e.Message, e); }
    }

    public static void ValidateOptions(AnonymizeOptions o)
    {
        if (o.Workers is < 1 or > 256) throw new PipelineException($"workers must be between 1 and 256 (got {o.Workers})");
        if (o.BatchSize is < 1 or > 1024) throw new PipelineException($"batch size must be between 1 and 1024 (got {o.BatchSize})");
        if (o.BatchTimeoutMs is < 0 or > 60_000) throw new PipelineException($"batch timeout must be between 0 (off) and 60000 ms (got {o.BatchTimeoutMs})");
        if (o.CropSize is < 64 or > 2048) throw new PipelineException($"crop size must be between 64 and 2048 (got {o.CropSize})");
        if (o.FrameMemoryMiB is < 16 or > 1_000_000) throw new PipelineException($"frame memory must be between 16 and 1000000 MiB (got {o.FrameMemoryMiB})");
        if (o.MaxMissingFrames is < 0 or > 10000) throw new PipelineException($"max missing frames must be between 0 and 10000 (got {o.MaxMissingFrames})");
        if (!Enum.IsDefined(o.Mode)) throw new PipelineException($"unknown mode {o.Mode}");
        if (!Enum.IsDefined(o.Detector)) throw new PipelineException($"unknown detector {o.Detector}");
        if (!(o.MinConfidence is > 0 and < 1)) throw new PipelineException($"min confidence must lie strictly between 0 and 1 (got {o.MinConfidence})");
        var l = o.Latent;
        LatentFaceStage.ParseIdentity(l.Identity);
        foreach (var (track, spec) in l.TrackIdentities)
        {
            if (track < 1) throw new PipelineException($"track ids start at 1 (got {track})");
            LatentFaceStage.ParseIdentity(spec);
        }
        if (!(l.Truncation is > 0 and <= 1)) throw new PipelineException($"truncation must lie in (0, 1] (got {l.Truncation})");
        if (!(l.IdentityMargin is >= 0 and < 1)) throw new PipelineException($"identity margin must lie in [0, 1) (got {l.IdentityMargin})");
        if (l.MaxCandidates is < 1 or > 1000) throw new PipelineException($"max candidates must be between 1 and 1000 (got {l.MaxCandidates})");
        if (l.PrescanFrames is < 0 or > 1000) throw new PipelineException($"pre-scan frames must be between 0 and 1000 (got {l.PrescanFrames})");
        if (!(l.WMinCutoff > 0) || !(l.WBeta >= 0)) throw new PipelineException($"w smoothing needs min cutoff > 0 and beta >= 0 (got {l.WMinCutoff}, {l.WBeta})");
        if (!(l.IdentityPush is >= 0 and <= 100)) throw new PipelineException($"identity push must be between 0 and 100 (got {l.IdentityPush})");
    }

    public void Dispose()
    {
        lock (_load)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var n in _latent.Values) n.Dispose();
            _latent.Clear();
            _recognizer?.Dispose();
            _ssd?.Dispose();
            _predictor?.Dispose();
        }
    }
}
