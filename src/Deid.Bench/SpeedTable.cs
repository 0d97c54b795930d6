using System.Globalization;
using System.Text;

namespace Deid.Bench;

/// <summary>
/// The README's speed table, from this run's pipeline rows: written between the README's `speed-table` markers
/// (and to bench/speed.md), so the figures there are always a bench's, with the machine and date they were measured on.
/// </summary>
public static class SpeedTable
{
    private const string Begin = "<!-- speed-table:begin (written by `make bench ARGS=pipeline`) -->";
    private const string End = "<!-- speed-table:end -->";

    public static void Write(BenchResults r)
    {
        var clips = new[] { "talk_d3.mp4", "talk_1080p.mp4" };
        double? Get(string suite, string name) =>
            r.Rows.FirstOrDefault(x => x.Suite == suite && x.Name == name)?.Value;
        double? Starts(string suite, string prefix) =>
            r.Rows.FirstOrDefault(x => x.Suite == suite && x.Name.StartsWith(prefix, StringComparison.Ordinal))?.Value;
        string F(double? v, string fmt = "F1") => v is { } d ? d.ToString(fmt, CultureInfo.InvariantCulture) : "–";

        var sb = new StringBuilder();
        sb.AppendLine(Begin);
        sb.AppendLine($"Measured {DateTime.UtcNow:yyyy-MM-dd} on {Environment.ProcessorCount} cores (blur mode, default HOG detector, `--preset medium`):");
        sb.AppendLine();
        sb.AppendLine("| | " + string.Join(" | ", clips.Select(c => c.Replace(".mp4", ""))) + " |");
        sb.AppendLine("|---|" + string.Concat(clips.Select(_ => "---|")));
        void Row(string label, Func<string, string> cell) => sb.AppendLine($"| {label} | " + string.Join(" | ", clips.Select(cell)) + " |");
        string S(string c) => "pipeline:" + c;
        Row("transcode floor (decode + encode), fps", c => F(Get(S(c), "transcode floor (decode+encode)")));
        Row("whole pipeline, fps", c => F(Get(S(c), "whole pipeline (blur)")));
        Row("**whole / floor** (target ≥ 0.8)", c => "**" + F(Get(S(c), "whole / transcode floor"), "F2") + "**");
        Row("whole / ideal", c => F(Get(S(c), "whole / ideal"), "F2"));
        foreach (var (label, prefix) in new[]
                 {
                     ("decode", "decode alone: CPU"), ("find + landmarks (HOG)", "detect+landmarks alone (HOG stream finder, 1 worker): CPU"),
                     ("align", "align alone: CPU"), ("blur", "face stage alone (blur): CPU"), ("paste", "paste alone (feather): CPU"),
                     ("encode", "encode alone: CPU"), ("whole pipeline", "whole pipeline (blur): CPU"),
                 })
            Row($"CPU ms/frame: {label}", c => F(Get(S(c), prefix)));
        Row("find + landmarks alone, `ssd`, fps (target ≥ 5 on 1080p)", c => F(Starts(S(c), "detect+landmarks alone, ssd")));
        Row("find + landmarks alone, `both`, fps", c => F(Starts(S(c), "detect+landmarks alone, both")));
        Row("PSNR / SSIM outside the faces", c => $"{F(Get(S(c), "output vs input outside faces: PSNR"))} dB / {F(Get(S(c), "output vs input outside faces: SSIM"), "F3")}");
        var lost = r.Rows.Where(x => x.Suite == "pipeline:coverage" && x.Name.EndsWith("misses", StringComparison.Ordinal)).ToList();
        if (lost.Count > 0)
            sb.AppendLine().AppendLine($"Coverage on the {lost.Count} shared clips: {lost.Sum(x => x.Value):F0} frames where the full-frame HOG path found a face and the stream finder did not (target 0).");
        var lostSsd = r.Rows.Where(x => x.Suite == "pipeline:coverage-ssd" && x.Name.EndsWith("stream finder misses", StringComparison.Ordinal)).ToList();
        var facesSsd = r.Rows.Where(x => x.Suite == "pipeline:coverage-ssd" && x.Name.EndsWith("misses / adds", StringComparison.Ordinal)).ToList();
        if (lostSsd.Count > 0)
            sb.AppendLine().AppendLine($"The same for the SSD stream finder on the same clips' first frames, against the full SSD search on every frame: " +
                $"{lostSsd.Sum(x => x.Value):F0} frames lost (target 0), {facesSsd.Sum(x => x.Value):F0} faces missed, " +
                $"{facesSsd.Sum(x => Convert.ToDouble(x.Extra?["added"] ?? 0, CultureInfo.InvariantCulture)):F0} added.");
        sb.Append(End);
        var table = sb.ToString();

        Directory.CreateDirectory(Path.Combine(Suites.RepoRoot, "bench"));
        File.WriteAllText(Path.Combine(Suites.RepoRoot, "bench", "speed.md"), table + "\n");
        var readme = Path.Combine(Suites.RepoRoot, "README.md");
        if (!File.Exists(readme)) return;
        var text = File.ReadAllText(readme);
        int a = text.IndexOf(Begin, StringComparison.Ordinal), b = text.IndexOf(End, StringComparison.Ordinal);
        if (a < 0 || b < a) { Console.Error.WriteLine("README.md has no speed-table markers; the table is in bench/speed.md"); return; }
        var tmp = readme + ".tmp";
        File.WriteAllText(tmp, text[..a] + table + text[(b + End.Length)..]);
        File.Move(tmp, readme, overwrite: true);
        Console.WriteLine("wrote the speed table to README.md and bench/speed.md");
    }
}
