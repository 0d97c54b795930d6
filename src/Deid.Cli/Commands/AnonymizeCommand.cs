using System.CommandLine;
using System.Diagnostics;
using Deid.Pipeline;
using Spectre.Console;

namespace Deid.Cli.Commands;

public static class AnonymizeCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("input") { Description = "Input video file." };
        var output = new Option<string>("--output", "-o") { Description = "Output video file (written atomically; audio is copied).", Required = true };
        var mode = new Option<string>("--mode")
        {
            Description = "What to do with each face: blur, pixelate, passthrough, or latent (neural replacement by one fixed synthetic or photo identity per track).",
            DefaultValueFactory = _ => "blur",
        };
        var report = new Option<string?>("--report") { Description = "Write a JSON report (per frame faces, track ids, handling, totals) to this file." };
        var workers = new Option<int>("--workers") { Description = "Parallel face detectors.", DefaultValueFactory = _ => Environment.ProcessorCount };
        var batch = new Option<int>("--batch-size", "--batch") { Description = "Face crops per face-stage batch (one batch is drawn on the device while the next fills).", DefaultValueFactory = _ => 8 };
        var batchTimeout = new Option<int>("--batch-timeout")
        {
            Description = "Milliseconds after which a short face batch is sent anyway (0 = off: batches are cut by counts only, so reruns give identical pixels).",
            DefaultValueFactory = _ => 0,
        };
        var cropSize = new Option<int>("--crop-size") { Description = "Aligned face crop size in pixels.", DefaultValueFactory = _ => 256 };
        var maxMissing = new Option<int>("--max-missing") { Description = "Frames a lost face is still followed before its region is only blurred.", DefaultValueFactory = _ => 10 };
        var device = new Option<string>("--device") { Description = "cpu or cuda.", DefaultValueFactory = _ => "cpu" };
        var detector = new Option<string>("--detector")
        {
            Description = "Face detector: hog (dlib), ssd (face-api.js SSD-MobileNetV1; needs `deid models fetch`) or both (a face either finds is processed).",
            DefaultValueFactory = _ => "hog",
        };
        var minConfidence = new Option<float?>("--min-confidence")
        {
            Description = "SSD face score threshold, between 0 and 1 (ssd and both; default 0.5). Lower finds more faces, false ones included.",
        };

        var identity = new Option<string>("--identity")
        {
            Description = "Latent mode: the replacement identity, seed:N (a synthetic person, one per track derived from N) or a photo (its largest face).",
            DefaultValueFactory = _ => "seed:0",
        };
        var track = new Option<string[]>("--track")
        {
            Description = "Latent mode: pin a track's identity, ID=PHOTO or ID=seed:N (repeatable; track ids as in the --report).",
            AllowMultipleArgumentsPerToken = false,
        };
        var truncation = new Option<double>("--truncation") { Description = "Latent mode: truncation psi of synthetic identities (1 = none).", DefaultValueFactory = _ => 0.7 };
        var margin = new Option<double>("--identity-margin")
        {
            Description = "Latent mode: a synthetic identity must stay this far below the same-person threshold from every face of the clip, else the next seed is tried.",
            DefaultValueFactory = _ => 0.1,
        };
        var wSmoothing = new Option<string>("--w-smoothing") { Description = "Latent mode: One-Euro smoothing of each track's w over time, on or off.", DefaultValueFactory = _ => "on" };
        var weightsDir = new Option<string?>("--weights-dir")
        {
            Description = "Latent mode: folder with E_attr.safetensors and M.safetensors (e.g. a `deid train` run's best/); G and E_id come from the model store unless it holds G.safetensors / E_id.safetensors.",
        };
        var randomWeights = new Option<bool>("--random-weights")
        {
            Description = "Latent mode: build any missing network with seeded random weights (output faces are noise; for trying the pipeline before weights exist).",
        };
        var randomSize = new Option<string>("--random-size")
        {
            Description = "With --random-weights: published (the method's real sizes) or small (narrow networks, for quick trials).",
            DefaultValueFactory = _ => "published",
        };

        var cmd = new Command("anonymize", "De-identify every face in a video (blur, pixelate, or replace it with a generated face), keeping audio, frame count and timing.");
        cmd.Arguments.Add(input);
        foreach (var o in new Option[] { output, mode, report, workers, batch, batchTimeout, cropSize, maxMissing, device, detector, minConfidence,
                     identity, track, truncation, margin, wSmoothing, weightsDir, randomWeights, randomSize }) cmd.Options.Add(o);

        cmd.SetAction(async (ParseResult r, CancellationToken ct) =>
        {
            try
            {
                var options = new AnonymizeOptions
                {
                    Mode = ParseMode(r.GetValue(mode)),
                    Workers = r.GetValue(workers),
                    BatchSize = r.GetValue(batch),
                    BatchTimeoutMs = r.GetValue(batchTimeout),
                    CropSize = r.GetValue(cropSize),
                    MaxMissingFrames = r.GetValue(maxMissing),
                    Device = r.GetValue(device) ?? "cpu",
                    Detector = FaceFinderFactory.Parse(r.GetValue(detector)),
                    Latent = new LatentOptions
                    {
                        Identity = r.GetValue(identity) ?? "seed:0",
                        TrackIdentities = ParseTracks(r.GetValue(track) ?? []),
                        Truncation = r.GetValue(truncation),
                        IdentityMargin = r.GetValue(margin),
                        WSmoothing = ParseOnOff(r.GetValue(wSmoothing), "--w-smoothing"),
                        Weights = new Deid.Models.LatentWeightsSpec
                        {
                            WeightsDir = r.GetValue(weightsDir) is { } wd ? CheckWeightsDir(wd) : null,
                            RandomWeights = r.GetValue(randomWeights),
                            RandomSize = ParseRandomSize(r.GetValue(randomSize)),
                        },
                    },
                };
                if (options.Mode != AnonymizeMode.Latent && (r.GetResult(identity) != null || r.GetResult(track) != null || r.GetValue(randomWeights) || r.GetResult(weightsDir) != null))
                    throw new ArgumentException("--identity, --track, --weights-dir and --random-weights belong to --mode latent");
                // Said at the start for a person watching; scripts get it as a warning line at the end and in the report.
                if (options.Latent.Weights.RandomWeights && options.Mode == AnonymizeMode.Latent && !Console.IsErrorRedirected)
                    Console.Error.WriteLine("deid: WARNING: --random-weights: networks without weight files get seeded RANDOM weights; the faces drawn are noise, not people");
                if (r.GetValue(minConfidence) is float threshold)
                {
                    if (options.Detector == DetectorKind.Hog)
                        throw new ArgumentException("--min-confidence sets the SSD detector's threshold: use it with --detector ssd or both");
                    options = options with { MinConfidence = threshold };
                }
                // The SSD detector runs libtorch every frame: measured 2x faster with the tensor setting, for about
                // 1 GB more peak memory (flat with clip length). See NativeMemory.TuneForTensors.
                if (options.Detector != DetectorKind.Hog || options.Mode == AnonymizeMode.Latent) Deid.Media.NativeMemory.TuneForTensors();
                var inPath = r.GetValue(input)!;
                var outPath = r.GetValue(output)!;
                var reportPath = r.GetValue(report);
                if (reportPath != null) CheckReportPath(reportPath, inPath, outPath);

                var result = Console.IsOutputRedirected
                    ? await Anonymizer.RunAsync(inPath, outPath, options, null, ct)
                    : await RunWithProgressAsync(inPath, outPath, options, ct);

                if (reportPath != null) result.WriteJson(reportPath);
                foreach (var w in result.Warnings) Console.Error.WriteLine($"deid: warning: {w}");
                Console.WriteLine(
                    $"anonymized {result.Frames} frames in {result.Elapsed.TotalSeconds:F1}s ({result.Fps:F1} fps): " +
                    $"{result.Faces} faces ({result.Replaced} replaced, {result.Tracked} tracked, {result.FallbackBlurred} fallback-blurred), " +
                    $"{result.Tracks} tracks" + (result.Audited ? $", audit: {result.FacesAudited} faces, {result.LeaksFound} leaks ({result.LeaksFixed} fixed, {result.LeaksBlurred} blurred)" : "")
                    + $" -> {outPath}");
                return 0;
            }
            catch (Exception e)
            {
                return CliErrors.Report(e);
            }
        });
        return cmd;
    }

    private static AnonymizeMode ParseMode(string? s) => (s ?? "blur").Trim().ToLowerInvariant() switch
    {
        "blur" => AnonymizeMode.Blur,
        "pixelate" => AnonymizeMode.Pixelate,
        "passthrough" => AnonymizeMode.Passthrough,
        "latent" => AnonymizeMode.Latent,
        _ => throw new ArgumentException($"unknown mode '{s}' (expected blur, pixelate, passthrough or latent)"),
    };

    /// <summary>"2=photo.jpg" or "3=seed:9" → track id → identity.</summary>
    public static IReadOnlyDictionary<int, string> ParseTracks(IEnumerable<string> pairs)
    {
        var result = new Dictionary<int, string>();
        foreach (var p in pairs)
        {
            var eq = p.IndexOf('=');
            if (eq <= 0 || eq == p.Length - 1 || !int.TryParse(p.AsSpan(0, eq), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id) || id < 1)
                throw new ArgumentException($"--track '{p}' is not ID=PHOTO or ID=seed:N (ID a track number from 1)");
            if (!result.TryAdd(id, p[(eq + 1)..])) throw new ArgumentException($"--track names track {id} twice");
        }
        return result;
    }

    internal static bool ParseOnOff(string? s, string option) => (s ?? "on").Trim().ToLowerInvariant() switch
    {
        "on" or "true" or "yes" => true,
        "off" or "false" or "no" => false,
        _ => throw new ArgumentException($"{option} takes on or off (got '{s}')"),
    };

    internal static Deid.Models.RandomWeightsSize ParseRandomSize(string? s) => (s ?? "published").Trim().ToLowerInvariant() switch
    {
        "published" => Deid.Models.RandomWeightsSize.Published,
        "small" => Deid.Models.RandomWeightsSize.Small,
        _ => throw new ArgumentException($"--random-size takes published or small (got '{s}')"),
    };

    internal static string CheckWeightsDir(string dir) =>
        Directory.Exists(dir) ? Path.GetFullPath(dir) : throw new ArgumentException($"--weights-dir: folder not found: {dir}");

    internal static void CheckReportPath(string reportPath, string input, string output)
    {
        var full = Path.GetFullPath(reportPath);
        if (full == Path.GetFullPath(input) || full == Path.GetFullPath(output))
            throw new ArgumentException($"the report file must differ from the input and output videos: {reportPath}");
        var dir = Path.GetDirectoryName(full);
        if (dir == null || !Directory.Exists(dir))
            throw new ArgumentException($"the report's folder does not exist: {dir}");
    }

    private static async Task<AnonymizeReport> RunWithProgressAsync(string input, string output, AnonymizeOptions options, CancellationToken ct)
    {
        AnonymizeReport? result = null;
        await AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask("frames", maxValue: 1);
                task.IsIndeterminate = true;
                var lastUpdate = Stopwatch.StartNew();
                var progress = new SyncProgress(p =>
                {
                    if (lastUpdate.ElapsedMilliseconds < 100 && p.FramesDone != p.TotalFrames) return;
                    lastUpdate.Restart();
                    if (p.TotalFrames is long total && total > 0)
                    {
                        task.IsIndeterminate = false;
                        task.MaxValue = total;
                    }
                    task.Value = p.FramesDone;
                    task.Description = $"frames {p.FramesDone}{(p.TotalFrames is { } t ? "/" + t : "")} [grey]{p.Fps:F1} fps[/]";
                });
                result = await Anonymizer.RunAsync(input, output, options, progress, ct);
                task.Value = task.MaxValue;
                task.StopTask();
            });
        return result!;
    }

    /// <summary>Progress&lt;T&gt; posts to the thread pool and may run after the task ends; this one reports inline.</summary>
    private sealed class SyncProgress(Action<PipelineProgress> report) : IProgress<PipelineProgress>
    {
        public void Report(PipelineProgress value) => report(value);
    }
}
