using System.Net;
using System.Text;
using System.Text.Json;

namespace Deid.Cli.Batch;

/// <summary>
/// OUT_DIR/summary.json and summary.html, derived from the manifest alone (so a local run, every Slurm task and
/// <c>--status</c> write the same thing): per clip status, frames, faces, fallback-blurred counts, leak-audit totals,
/// time; totals; the clips whose fail-closed fallback fired are flagged.
/// </summary>
public static class BatchSummary
{
    public sealed record Totals(int Clips, int Done, int Failed, int Pending, long Frames, long Faces, long FallbackBlurred,
        long LeaksFound, long LeaksFixed, long LeaksBlurred, double Seconds, IReadOnlyList<string> Flagged);

    public static bool IsFlagged(ManifestRecord r) => r.Status == ClipStatus.Done && (r.FallbackBlurred > 0 || r.LeaksBlurred > 0);

    public static Totals Compute(ManifestState state)
    {
        var clips = state.Order.Select(i => state.Clips[i]).ToList();
        var done = clips.Where(c => c.Status == ClipStatus.Done).ToList();
        return new Totals(clips.Count, done.Count, clips.Count(c => c.Status == ClipStatus.Failed),
            clips.Count(c => c.Status is not ClipStatus.Done and not ClipStatus.Failed),
            done.Sum(c => c.Frames ?? 0), done.Sum(c => c.Faces ?? 0), done.Sum(c => c.FallbackBlurred ?? 0),
            done.Sum(c => c.LeaksFound ?? 0), done.Sum(c => c.LeaksFixed ?? 0), done.Sum(c => c.LeaksBlurred ?? 0),
            Math.Round(done.Sum(c => c.Seconds ?? 0), 3), done.Where(IsFlagged).Select(c => c.Input!).ToList());
    }

    public static void Write(string outDir, ManifestState state)
    {
        var t = Compute(state);
        var clips = state.Order.Select(i => state.Clips[i]).ToList();
        WriteAtomic(Path.Combine(outDir, "summary.json"), Json(state, t, clips));
        WriteAtomic(Path.Combine(outDir, "summary.html"), Html(state, t, clips));
    }

    private static string Json(ManifestState state, Totals t, List<ManifestRecord> clips)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("outDir", state.Header?.OutDir);
            w.WriteString("optionsHash", state.Header?.OptionsHash);
            if (state.Header?.Options is { } o) { w.WritePropertyName("options"); o.WriteTo(w); }
            w.WriteString("written", DateTimeOffset.UtcNow);
            w.WriteStartObject("totals");
            w.WriteNumber("clips", t.Clips);
            w.WriteNumber("done", t.Done);
            w.WriteNumber("failed", t.Failed);
            w.WriteNumber("pending", t.Pending);
            w.WriteNumber("frames", t.Frames);
            w.WriteNumber("faces", t.Faces);
            w.WriteNumber("fallbackBlurred", t.FallbackBlurred);
            w.WriteNumber("leaksFound", t.LeaksFound);
            w.WriteNumber("leaksFixed", t.LeaksFixed);
            w.WriteNumber("leaksBlurred", t.LeaksBlurred);
            w.WriteNumber("seconds", t.Seconds);
            w.WriteNumber("flaggedClips", t.Flagged.Count);
            w.WriteEndObject();
            w.WriteStartArray("clips");
            foreach (var c in clips)
            {
                w.WriteStartObject();
                w.WriteString("input", c.Input);
                w.WriteString("output", c.Output);
                w.WriteString("report", c.Report);
                w.WriteString("status", c.Status);
                if (c.Error != null) w.WriteString("error", c.Error);
                w.WriteNumber("attempts", c.Attempt ?? 0);
                w.WriteBoolean("flagged", IsFlagged(c));
                if (c.Status == ClipStatus.Done)
                {
                    w.WriteNumber("frames", c.Frames ?? 0);
                    w.WriteNumber("faces", c.Faces ?? 0);
                    w.WriteNumber("replaced", c.Replaced ?? 0);
                    w.WriteNumber("tracked", c.Tracked ?? 0);
                    w.WriteNumber("fallbackBlurred", c.FallbackBlurred ?? 0);
                    if (c.Audited == true)
                    {
                        w.WriteNumber("leaksFound", c.LeaksFound ?? 0);
                        w.WriteNumber("leaksFixed", c.LeaksFixed ?? 0);
                        w.WriteNumber("leaksBlurred", c.LeaksBlurred ?? 0);
                    }
                }
                if (c.Seconds is double s) w.WriteNumber("seconds", s);
                if (c.Host != null) w.WriteString("host", c.Host);
                if (c.Plan != null) w.WriteString("plan", c.Plan);
                if (c.Task is int task) w.WriteNumber("task", task);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static string Html(ManifestState state, Totals t, List<ManifestRecord> clips)
    {
        static string E(object? o) => WebUtility.HtmlEncode(o?.ToString() ?? "");
        var outDir = state.Header?.OutDir ?? "";
        string Rel(string? p) => p is null ? "" : outDir.Length > 0 && BatchInputs.IsUnder(p, outDir) ? Path.GetRelativePath(outDir, p) : p;
        var sb = new StringBuilder();
        sb.Append("<!doctype html><html><head><meta charset=\"utf-8\"><title>deid batch summary</title><style>")
          .Append("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}")
          .Append("td.n{text-align:right}.done{color:#070}.failed{color:#b00;font-weight:bold}.flag{background:#fff3cd}.pending{color:#666}")
          .Append("</style></head><body>");
        sb.Append("<h1>deid batch summary</h1>");
        sb.Append($"<p>{E(outDir)} — written {E(DateTimeOffset.UtcNow.ToString("u"))}</p>");
        sb.Append($"<p><b>{t.Done}</b> of {t.Clips} clips done, <b>{t.Failed}</b> failed, {t.Pending} pending; {t.Frames} frames, {t.Faces} faces, " +
                  $"{t.FallbackBlurred} fallback-blurred; {t.Seconds:F1} s of processing.</p>");
        if (t.LeaksFound > 0 || clips.Any(c => c.Audited == true))
            sb.Append($"<p>Leak audit: {t.LeaksFound} leaks found, {t.LeaksFixed} fixed, {t.LeaksBlurred} blurred.</p>");
        if (t.Flagged.Count > 0)
            sb.Append($"<p class=\"flag\"><b>{t.Flagged.Count} clip(s) flagged</b>: the fail-closed fallback blurred faces that could not be processed (check these).</p>");
        sb.Append("<table><tr><th>input</th><th>output</th><th>status</th><th>frames</th><th>faces</th><th>fallback-blurred</th><th>leaks (found/fixed/blurred)</th><th>seconds</th><th>attempts</th><th>error</th></tr>");
        foreach (var c in clips)
        {
            var cls = IsFlagged(c) ? "flag" : "";
            var st = c.Status == ClipStatus.Done ? "done" : c.Status == ClipStatus.Failed ? "failed" : "pending";
            var report = c.Status == ClipStatus.Done && c.Report != null ? $" (<a href=\"{E(Uri.EscapeDataString(Rel(c.Report)).Replace("%2F", "/"))}\">report</a>)" : "";
            sb.Append($"<tr class=\"{cls}\"><td>{E(c.Input)}</td><td>{E(Rel(c.Output))}{report}</td><td class=\"{st}\">{E(c.Status)}</td>")
              .Append($"<td class=\"n\">{E(c.Frames)}</td><td class=\"n\">{E(c.Faces)}</td><td class=\"n\">{E(c.FallbackBlurred)}</td>")
              .Append($"<td class=\"n\">{(c.Audited == true ? $"{c.LeaksFound}/{c.LeaksFixed}/{c.LeaksBlurred}" : "")}</td>")
              .Append($"<td class=\"n\">{E(c.Seconds?.ToString("F1"))}</td><td class=\"n\">{E(c.Attempt)}</td><td>{E(c.Error)}</td></tr>");
        }
        sb.Append("</table></body></html>\n");
        return sb.ToString();
    }

    private static void WriteAtomic(string path, string text)
    {
        var temp = Path.Combine(Path.GetDirectoryName(path)!, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.WriteAllText(temp, text);
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { }
            throw;
        }
    }
}
