namespace Deid.Evaluation;

/// <summary>Entry points of `deid evaluate`: run, then write report.json, report.html and the plots atomically.</summary>
public static class Evaluator
{
    /// <param name="context">Networks to reuse across runs (tests, batches); null loads them for this run.</param>
    public static EvaluationReport EvaluateVideo(string source, string output, string reportDir, EvaluationOptions options,
        IProgress<long>? progress = null, CancellationToken ct = default, EvalContext? context = null)
    {
        foreach (var (p, what) in new[] { (source, "source video"), (output, "output video") })
            if (!File.Exists(p)) throw new FileNotFoundException($"{what} not found: {p}", p);
        return Run(reportDir, options, context, (ctx, work) => VideoEvaluator.Evaluate(source, output, options, ctx, work, progress, ct));
    }

    public static EvaluationReport EvaluatePairs(string pairsDir, string reportDir, EvaluationOptions options, CancellationToken ct = default, EvalContext? context = null)
    {
        PairsEvaluator.FindTriples(pairsDir); // fail on a bad layout before loading any model
        return Run(reportDir, options, context, (ctx, work) => PairsEvaluator.Evaluate(pairsDir, options, ctx, work, ct));
    }

    private static EvaluationReport Run(string reportDir, EvaluationOptions options, EvalContext? shared, Func<EvalContext, string, EvaluationReport> body)
    {
        var final = Path.GetFullPath(reportDir);
        if (File.Exists(final)) throw new IOException($"report folder {reportDir} is an existing file");
        var parent = Path.GetDirectoryName(final) ?? throw new IOException($"invalid report folder {reportDir}");
        Directory.CreateDirectory(parent);
        // Same file system as the destination, so the final move is a rename.
        var work = Path.Combine(parent, $".{Path.GetFileName(final)}.tmp-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}");
        Directory.CreateDirectory(work);
        try
        {
            EvaluationReport report;
            var ctx = shared ?? EvalContext.Create(options);
            try
            {
                report = body(ctx, work);
                report.Tools = ctx.Versions(options.DeidVersion);
            }
            finally
            {
                if (shared is null) ctx.Dispose();
            }
            File.WriteAllText(Path.Combine(work, "report.json"), report.ToJson());
            File.WriteAllText(Path.Combine(work, "report.html"), HtmlReport.Render(report, work));
            MoveIntoPlace(work, final);
            return report;
        }
        finally
        {
            if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
        }
    }

    private static void MoveIntoPlace(string work, string final)
    {
        if (!Directory.Exists(final))
        {
            Directory.Move(work, final);
            return;
        }
        // An existing folder may hold other files: replace only ours, report.json last so a reader never sees a new
        // report beside old plots.
        foreach (var f in Directory.GetFiles(work).OrderBy(f => Path.GetFileName(f) == "report.json" ? 1 : 0))
            File.Move(f, Path.Combine(final, Path.GetFileName(f)), overwrite: true);
    }
}
