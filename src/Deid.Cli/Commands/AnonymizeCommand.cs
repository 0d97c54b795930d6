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
        var report = new Option<string?>("--report") { Description = "Write a JSON report (per frame faces, track ids, handling, totals) to this file." };
        var job = new AnonymizeOptionSet();

        var cmd = new Command("anonymize", "De-identify every face in a video (blur, pixelate, or replace it with a generated face), keeping audio, frame count and timing.");
        cmd.Arguments.Add(input);
        cmd.Options.Add(output);
        cmd.Options.Add(report);
        job.AddTo(cmd);

        cmd.SetAction(async (ParseResult r, CancellationToken ct) =>
        {
            try
            {
                var options = job.Build(r);
                var inPath = r.GetValue(input)!;
                var outPath = r.GetValue(output)!;
                var reportPath = r.GetValue(report);
                if (reportPath != null) CheckReportPath(reportPath, inPath, outPath);

                using var result = Console.IsOutputRedirected
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
