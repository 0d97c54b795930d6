using System.CommandLine;
using System.Globalization;
using Deid.Evaluation;
using Spectre.Console;

namespace Deid.Cli.Commands;

public static class EvaluateCommand
{
    private const string Help =
        "Measure an anonymization: identity to the target and leak to the source (a recognizer other than the one the " +
        "anonymizer uses), temporal identity coherence, expression (68-point landmark distance in the source's FFHQ crop), " +
        "head pose error, landmark jitter and detection coverage. Writes REPORT_DIR/report.json, report.html and PNG plots.\n" +
        "Video mode: --source ORIGINAL --output ANONYMIZED (frame-aligned) [--target PHOTO|seed:N].\n" +
        "Pairs mode: --pairs DIR with either files NAME_id.EXT, NAME_attr.EXT, NAME_out.EXT (identity image, attribute image, " +
        "output) or subfolders id/, attr/, out/ holding images with the same base names.";

    public static Command Create()
    {
        var source = new Option<string?>("--source") { Description = "Original video." };
        var output = new Option<string?>("--output") { Description = "Anonymized video, frame-aligned with --source." };
        var target = new Option<string?>("--target") { Description = "Target identity: a photo, or seed:N for a generated identity (no photo: identity-to-target is not measured)." };
        var pairs = new Option<string?>("--pairs") { Description = "Folder of image triples (NAME_id/NAME_attr/NAME_out, or id/ attr/ out/ subfolders)." };
        var reportDir = new Option<string>("--report-dir", "-o") { Description = "Report folder (written to a temp folder, then moved into place).", Required = true };
        var stride = new Option<int>("--stride") { Description = "Evaluate every Nth frame.", DefaultValueFactory = _ => 1 };
        var calibration = new Option<string?>("--calibration") { Description = "people/NAME/*.png folder to calibrate the same-person threshold (default: ../shared/golden/face-api/people, or $DEID_SHARED)." };
        var recognizer = new Option<string?>("--recognizer") { Description = "Recognizer ONNX model (default: $DEID_MODELS or models/ + faceplugin/fr_feature.onnx)." };
        var sheet = new Option<int>("--sheet-frames") { Description = "Sampled frames on the contact sheet.", DefaultValueFactory = _ => 8 };

        var cmd = new Command("evaluate", Help);
        foreach (var o in new Option[] { source, output, target, pairs, reportDir, stride, calibration, recognizer, sheet }) cmd.Options.Add(o);

        cmd.SetAction(async (ParseResult r, CancellationToken ct) =>
        {
            try
            {
                var options = new EvaluationOptions
                {
                    Stride = r.GetValue(stride),
                    Target = r.GetValue(target),
                    CalibrationDirectory = r.GetValue(calibration),
                    // The same model store every other command reads (DEID_MODELS, else models/ beside Deid.sln).
                    RecognizerPath = r.GetValue(recognizer) ?? Path.Combine(new Deid.Models.ModelStore().Root, Deid.Faces.OnnxFaceRecognizer.RelativePath),
                    ContactSheetFrames = r.GetValue(sheet),
                    DeidVersion = typeof(EvaluateCommand).Assembly.GetName().Version?.ToString(),
                };
                if (options.Stride < 1) throw new ArgumentException($"--stride must be at least 1 (got {options.Stride})");
                if (options.ContactSheetFrames < 1) throw new ArgumentException($"--sheet-frames must be at least 1 (got {options.ContactSheetFrames})");
                var dir = r.GetValue(reportDir)!;
                var pairsDir = r.GetValue(pairs);
                var src = r.GetValue(source);
                var outp = r.GetValue(output);

                EvaluationReport report;
                if (pairsDir != null)
                {
                    if (src != null || outp != null) throw new ArgumentException("use either --pairs or --source/--output, not both");
                    report = await Task.Run(() => Evaluator.EvaluatePairs(pairsDir, dir, options, ct), ct);
                }
                else
                {
                    if (src == null || outp == null) throw new ArgumentException("evaluate needs --source and --output (videos), or --pairs DIR");
                    report = await Task.Run(() => RunVideo(src, outp, dir, options, ct), ct);
                }
                PrintSummary(report, dir);
                return 0;
            }
            catch (Exception e)
            {
                return CliErrors.Report(e);
            }
        });
        return cmd;
    }

    private static EvaluationReport RunVideo(string src, string outp, string dir, EvaluationOptions options, CancellationToken ct)
    {
        if (Console.IsErrorRedirected) return Evaluator.EvaluateVideo(src, outp, dir, options, null, ct);
        var last = 0L;
        var progress = new InlineProgress(n =>
        {
            if (n - last < 10) return;
            last = n;
            Console.Error.Write($"\revaluating: frame {n}   ");
        });
        try { return Evaluator.EvaluateVideo(src, outp, dir, options, progress, ct); }
        finally { Console.Error.Write("\r                              \r"); }
    }

    private static void PrintSummary(EvaluationReport report, string dir)
    {
        foreach (var w in report.Warnings) Console.Error.WriteLine($"deid: warning: {w}");
        var table = new Table().Title("deid evaluate").AddColumn("metric").AddColumn(new TableColumn("mean ± std").RightAligned()).AddColumn(new TableColumn("n").RightAligned());
        void Add(string label, string key)
        {
            if (report.Summary.TryGetValue(key, out var m)) table.AddRow(Markup.Escape(label), Markup.Escape(m.ToString()), m.Count.ToString(CultureInfo.InvariantCulture));
        }
        Add("identity to target", EvaluationReport.Keys.IdentityToTarget);
        Add("leak to source", EvaluationReport.Keys.Leak);
        if (report.LeakFraction is { } lf && report.Threshold is { } th)
            table.AddRow(Markup.Escape($"leak ≥ threshold {th.Threshold:0.###}"), $"{lf * 100:0.#} %", "");
        Add("frame-to-frame coherence", EvaluationReport.Keys.Coherence);
        Add("similarity to clip mean", EvaluationReport.Keys.ToClipMean);
        Add("expression (px, 256 crop)", EvaluationReport.Keys.ExpressionPx);
        Add("yaw error (°)", EvaluationReport.Keys.YawError);
        Add("pitch error (°)", EvaluationReport.Keys.PitchError);
        Add("roll error (°)", EvaluationReport.Keys.RollError);
        Add("jitter source", EvaluationReport.Keys.JitterSource);
        Add("jitter output", EvaluationReport.Keys.JitterOutput);
        if (report.Coverage is { } c)
            table.AddRow("output faces detected", $"{c.MatchedFaces}/{c.SourceFaces}", $"{c.MissingFaces} missing, {c.ExtraFaces} extra");
        AnsiConsole.Write(table);
        if (report.Threshold is { } t)
            Console.WriteLine(double.IsNaN(t.BalancedAccuracy)
                ? $"same-person threshold {t.Threshold:0.###} (not calibrated)"
                : $"same-person threshold {t.Threshold:0.###} (balanced accuracy {t.BalancedAccuracy * 100:0.#} % on {t.People} people)");
        Console.WriteLine($"report: {Path.Combine(Path.GetFullPath(dir), "report.html")}");
    }

    private sealed class InlineProgress(Action<long> report) : IProgress<long>
    {
        public void Report(long value) => report(value);
    }
}
