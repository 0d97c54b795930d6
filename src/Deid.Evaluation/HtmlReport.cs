using System.Globalization;
using System.Net;
using System.Text;

namespace Deid.Evaluation;

/// <summary>
/// A single self-contained HTML file: plots are embedded as base64 data URIs (the PNG files also sit beside it),
/// so it opens offline and can be mailed on its own. A small script records in body[data-images-loaded] whether
/// every image decoded, which the tests read back through a headless browser.
/// </summary>
public static class HtmlReport
{
    private static readonly (string Key, string Label, string Better)[] MetricRows =
    [
        (EvaluationReport.Keys.IdentityToTarget, "Identity to target (cosine)", "higher"),
        (EvaluationReport.Keys.Leak, "Identity leak to source (cosine)", "lower"),
        (EvaluationReport.Keys.Coherence, "Frame-to-frame identity coherence", "higher"),
        (EvaluationReport.Keys.ToClipMean, "Similarity to the clip's mean output identity", "higher"),
        (EvaluationReport.Keys.ExpressionPx, "Expression: landmark distance (px in aligned crop)", "lower"),
        (EvaluationReport.Keys.ExpressionNorm, "Expression: landmark distance / crop size", "lower"),
        (EvaluationReport.Keys.YawError, "Yaw error (°)", "lower"),
        (EvaluationReport.Keys.PitchError, "Pitch error (°)", "lower"),
        (EvaluationReport.Keys.RollError, "Roll error (°)", "lower"),
        (EvaluationReport.Keys.JitterSource, "Landmark jitter, source (2nd diff / inter-ocular)", "reference"),
        (EvaluationReport.Keys.JitterOutput, "Landmark jitter, output", "close to source"),
    ];

    public static string Render(EvaluationReport r, string plotDirectory)
    {
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>deid evaluation report</title>\n<style>")
          .Append("body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}table{border-collapse:collapse;margin:8px 0 20px}")
          .Append("td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}th{background:#f3f3f3}")
          .Append("td.n{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;display:block;margin:8px 0 20px;border:1px solid #ddd}")
          .Append(".warn{color:#a40}</style></head>\n<body data-images-loaded=\"pending\">\n");
        sb.Append("<h1>deid evaluation report</h1>\n<table>");
        Row(sb, "Kind", r.Kind);
        if (r.Source != null) Row(sb, "Source (original)", r.Source);
        if (r.Output != null) Row(sb, "Output (anonymized)", r.Output);
        if (r.PairsDirectory != null) Row(sb, "Pairs folder", r.PairsDirectory);
        Row(sb, "Target", r.Target ?? "(none)");
        if (r.Kind == "video") Row(sb, "Stride", r.Stride.ToString(CultureInfo.InvariantCulture));
        Row(sb, "Created (UTC)", r.Created.ToString("u", CultureInfo.InvariantCulture));
        sb.Append("</table>\n");

        if (r.Warnings.Count > 0)
        {
            sb.Append("<h2>Warnings</h2><ul>");
            foreach (var w in r.Warnings) sb.Append("<li class=\"warn\">").Append(E(w)).Append("</li>");
            sb.Append("</ul>\n");
        }

        sb.Append("<h2>Summary (mean ± std over evaluated faces)</h2>\n<table><tr><th>Metric</th><th>Mean ± std</th><th>Min</th><th>Max</th><th>N</th><th>Better</th></tr>");
        foreach (var (key, label, better) in MetricRows)
        {
            if (!r.Summary.TryGetValue(key, out var m)) continue;
            sb.Append("<tr><td>").Append(E(label)).Append("</td><td class=\"n\">").Append(E(m.ToString()))
              .Append("</td><td class=\"n\">").Append(F(m.Min)).Append("</td><td class=\"n\">").Append(F(m.Max))
              .Append("</td><td class=\"n\">").Append(m.Count).Append("</td><td>").Append(better).Append("</td></tr>");
        }
        if (r.LeakFraction is { } lf)
            sb.Append("<tr><td>Leak: fraction of faces at or above the same-person threshold</td><td class=\"n\">")
              .Append((lf * 100).ToString("0.#", CultureInfo.InvariantCulture)).Append(" %</td><td></td><td></td><td></td><td>lower</td></tr>");
        sb.Append("</table>\n");

        if (r.Threshold is { } t)
        {
            sb.Append("<h2>Same-person threshold</h2>\n<table>");
            Row(sb, "Threshold (cosine)", F(t.Threshold));
            Row(sb, "Balanced accuracy (chosen to maximise)", Pct(t.BalancedAccuracy));
            Row(sb, "Accuracy over all pairs", Pct(t.Accuracy));
            Row(sb, "Pairs", $"{t.SamePairs} same, {t.DifferentPairs} different ({t.People} people, {t.Images} images)");
            Row(sb, "Mean similarity", $"same {F(t.SameMean)}, different {F(t.DifferentMean)}");
            Row(sb, "Calibration set", t.Source);
            sb.Append("</table>\n");
        }

        if (r.Coverage is { } c)
        {
            sb.Append("<h2>Detection coverage</h2>\n<table>");
            Row(sb, "Frames evaluated", c.FramesEvaluated.ToString(CultureInfo.InvariantCulture));
            Row(sb, "Frames with a face: source / output", $"{c.FramesWithSourceFace} / {c.FramesWithOutputFace}");
            Row(sb, "Faces: source / output / matched", $"{c.SourceFaces} / {c.OutputFaces} / {c.MatchedFaces}");
            Row(sb, "Missing output faces (source face, no output face)", c.MissingFaces.ToString(CultureInfo.InvariantCulture));
            Row(sb, "Extra output faces (no source face)", c.ExtraFaces.ToString(CultureInfo.InvariantCulture));
            Row(sb, "Output detection rate", c.OutputDetectionRate is { } d ? Pct(d) : "n/a");
            sb.Append("</table>\n");
        }

        if (r.Tracks.Count > 0)
        {
            sb.Append("<h2>Per track</h2>\n<table><tr><th>Track</th><th>Frames</th><th>Output detected</th><th>Identity to target</th><th>Leak</th><th>Leak ≥ threshold</th><th>Coherence</th><th>Expression (px)</th><th>Yaw err</th></tr>");
            foreach (var tr in r.Tracks)
            {
                string M(string k) => tr.Metrics.TryGetValue(k, out var v) ? v.ToString() : "n/a";
                sb.Append("<tr><td>").Append(tr.Track).Append("</td><td class=\"n\">").Append(tr.Frames).Append("</td><td class=\"n\">").Append(tr.OutputDetected)
                  .Append("</td><td>").Append(E(M(EvaluationReport.Keys.IdentityToTarget))).Append("</td><td>").Append(E(M(EvaluationReport.Keys.Leak)))
                  .Append("</td><td class=\"n\">").Append(tr.LeakFraction is { } f ? Pct(f) : "n/a")
                  .Append("</td><td>").Append(E(M(EvaluationReport.Keys.Coherence))).Append("</td><td>").Append(E(M(EvaluationReport.Keys.ExpressionPx)))
                  .Append("</td><td>").Append(E(M(EvaluationReport.Keys.YawError))).Append("</td></tr>");
            }
            sb.Append("</table>\n");
        }

        if (r.Pairs.Count > 0)
        {
            sb.Append("<h2>Pairs</h2>\n<table><tr><th>Name</th><th>Output detected</th><th>Identity to target</th><th>Leak to attribute image</th><th>Expression (px)</th><th>Pose error yaw/pitch/roll (°)</th><th>Note</th></tr>");
            foreach (var p in r.Pairs)
                sb.Append("<tr><td>").Append(E(p.Name)).Append("</td><td>").Append(p.OutputDetected ? "yes" : "no")
                  .Append("</td><td class=\"n\">").Append(F(p.IdentityToTarget)).Append("</td><td class=\"n\">").Append(F(p.Leak))
                  .Append("</td><td class=\"n\">").Append(F(p.ExpressionPx)).Append("</td><td class=\"n\">")
                  .Append(p.PoseError is { } pe ? $"{F(pe.Yaw)} / {F(pe.Pitch)} / {F(pe.Roll)}" : "n/a")
                  .Append("</td><td>").Append(E(p.Note ?? "")).Append("</td></tr>");
            sb.Append("</table>\n");
        }

        if (r.Plots.Count > 0)
        {
            sb.Append("<h2>Plots</h2>\n");
            foreach (var plot in r.Plots)
            {
                var file = Path.Combine(plotDirectory, plot);
                var b64 = Convert.ToBase64String(File.ReadAllBytes(file));
                sb.Append("<h3>").Append(E(Path.GetFileNameWithoutExtension(plot).Replace('_', ' '))).Append("</h3>\n")
                  .Append("<img alt=\"").Append(E(plot)).Append("\" data-file=\"").Append(E(plot)).Append("\" src=\"data:image/png;base64,").Append(b64).Append("\">\n");
            }
        }

        sb.Append("<h2>Tools and models</h2>\n<table>");
        Row(sb, "deid", r.Tools.Deid);
        Row(sb, "ffmpeg", r.Tools.Ffmpeg ?? "n/a");
        Row(sb, "ONNX Runtime", r.Tools.OnnxRuntime);
        Row(sb, ".NET", r.Tools.Runtime);
        foreach (var (name, m) in r.Tools.Models) Row(sb, name, $"{m.Path} (sha256 {m.Sha256})");
        sb.Append("</table>\n<p>All numbers, per frame and per face, are in <code>report.json</code> beside this file.</p>\n");

        // Sets the flag once every image has either loaded or failed, so a headless check can read the result from the DOM.
        sb.Append("""
<script>
(function(){
  function check(){
    var imgs=Array.prototype.slice.call(document.images);
    var pending=imgs.filter(function(i){return !i.complete;});
    if(pending.length){setTimeout(check,50);return;}
    var ok=imgs.every(function(i){return i.naturalWidth>0;});
    document.body.dataset.imagesLoaded=ok?"true":"false";
    document.body.dataset.imageCount=String(imgs.length);
  }
  if(document.readyState==="complete")check();else window.addEventListener("load",check);
})();
</script>
</body></html>
""");
        return sb.ToString();
    }

    private static void Row(StringBuilder sb, string k, string v) => sb.Append("<tr><th>").Append(E(k)).Append("</th><td>").Append(E(v)).Append("</td></tr>");
    private static string E(string s) => WebUtility.HtmlEncode(s);
    private static string F(double? v) => v is { } d ? d.ToString("0.####", CultureInfo.InvariantCulture) : "n/a";
    private static string Pct(double v) => (v * 100).ToString("0.#", CultureInfo.InvariantCulture) + " %";
}
