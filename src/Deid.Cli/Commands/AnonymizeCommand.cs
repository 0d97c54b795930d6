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
        var mode = new Option<string>("--mode") { Description = "What to do with each face: blur, pixelate or passthrough.", DefaultValueFactory = _ => "blur" };
        var report = new Option<string?>("--report") { Description = "Write a JSON report (per frame faces, track ids, handling, totals) to this file." };
        var workers = new Option<int>("--workers") { Description = "Parallel face detectors.", DefaultValueFactory = _ => Environment.ProcessorCount };
        var batch = new Option<int>("--batch-size") { Description = "Face crops per face-stage batch.", DefaultValueFactory = _ => 8 };
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

        var dropSubtitles = new Option<bool>("--drop-subtitles")
        {
            Description = "Leave the input's subtitle streams out (by default they are copied where the output container can hold them).",
        };
        var audioTranscode = new Option<string?>("--audio-transcode")
        {
            Description = "Re-encode the audio instead of copying it: opus (e.g. for .webm output from AAC input).",
        };

        var cmd = new Command("anonymize", "De-identify every face in a video (blur, pixelate or pass through), keeping audio, frame count and timing.");
        cmd.Arguments.Add(input);
        foreach (var o in new Option[] { output, mode, report, workers, batch, cropSize, maxMissing, device, detector, minConfidence, dropSubtitles, audioTranscode }) cmd.Options.Add(o);

        cmd.SetAction(async (ParseResult r, CancellationToken ct) =>
        {
            try
            {
                var options = new AnonymizeOptions
                {
                    Mode = ParseMode(r.GetValue(mode)),
                    Workers = r.GetValue(workers),
                    BatchSize = r.GetValue(batch),
                    CropSize = r.GetValue(cropSize),
                    MaxMissingFrames = r.GetValue(maxMissing),
                    Device = r.GetValue(device) ?? "cpu",
                    Detector = FaceFinderFactory.Parse(r.GetValue(detector)),
                };
                if (r.GetValue(minConfidence) is float threshold)
                {
                    if (options.Detector == DetectorKind.Hog)
                        throw new ArgumentException("--min-confidence sets the SSD detector's threshold: use it with --detector ssd or both");
                    options = options with { MinConfidence = threshold };
                }
                // The SSD detector runs libtorch every frame: measured 2x faster with the tensor setting, for about
                // 1 GB more peak memory (flat with clip length). See NativeMemory.TuneForTensors.
                if (options.Detector != DetectorKind.Hog) Deid.Media.NativeMemory.TuneForTensors();
                // Weights loaded without a manifest record are reported with the run's other warnings, after it succeeds:
                // a failing run prints its one error line and nothing else.
                var weightWarnings = new System.Collections.Concurrent.ConcurrentQueue<string>();
                Deid.Models.ModelStore.WarningSink = weightWarnings.Enqueue;
                var inPath = r.GetValue(input)!;
                var outPath = r.GetValue(output)!;
                var reportPath = r.GetValue(report);
                if (reportPath != null) CheckReportPath(reportPath, inPath, outPath);

                var transcode = r.GetValue(audioTranscode)?.Trim().ToLowerInvariant();
                if (transcode != null && !Deid.Media.VideoWriterOptions.AudioTranscodeCodecs.Contains(transcode))
                    throw new ArgumentException($"unknown --audio-transcode '{r.GetValue(audioTranscode)}' (expected {string.Join(", ", Deid.Media.VideoWriterOptions.AudioTranscodeCodecs)})");
                // The pipeline creates its writer without options: the scope hands them over and collects its warnings.
                using var writerScope = Deid.Media.VideoWriterScope.Begin(new Deid.Media.VideoWriterOptions
                {
                    DropSubtitles = r.GetValue(dropSubtitles),
                    AudioTranscode = transcode,
                });

                var result = Console.IsOutputRedirected
                    ? await Anonymizer.RunAsync(inPath, outPath, options, null, ct)
                    : await RunWithProgressAsync(inPath, outPath, options, ct);

                if (reportPath != null) result.WriteJson(reportPath);
                foreach (var w in weightWarnings) Console.Error.WriteLine($"deid: warning: {w}");
                foreach (var w in writerScope.Warnings.Except(result.Warnings)) Console.Error.WriteLine($"deid: warning: {w}");
                foreach (var w in result.Warnings) Console.Error.WriteLine($"deid: warning: {w}");
                Console.WriteLine(
                    $"anonymized {result.Frames} frames in {result.Elapsed.TotalSeconds:F1}s ({result.Fps:F1} fps): " +
                    $"{result.Faces} faces ({result.Replaced} replaced, {result.Tracked} tracked, {result.FallbackBlurred} fallback-blurred), " +
                    $"{result.Tracks} tracks -> {outPath}");
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
        _ => throw new ArgumentException($"unknown mode '{s}' (expected blur, pixelate or passthrough)"),
    };

    private static void CheckReportPath(string reportPath, string input, string output)
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
