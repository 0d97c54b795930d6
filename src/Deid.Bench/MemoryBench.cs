using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Deid.Bench;

/// <summary>
/// `make bench ARGS=memory`: peak resident memory of a 4K `deid anonymize --mode blur` run (3 s of talk_1080p scaled to
/// 3840x2160), per process of the tree (deid itself, its ffmpeg decoder, its ffmpeg encoder; sampled every 0.2 s), against
/// the 1 GB target; and the frame rate of a 512² clip (talk_d3) by CPU time (user + sys of deid and its ffmpeg children,
/// so the other load on a shared machine does not count), to show the 4K bound costs small clips nothing.
/// </summary>
public static class MemoryBench
{
    public const double TargetMiB = 1024;

    public static void Run(BenchResults r)
    {
        var hd = Path.Combine(Suites.Shared, "media", "videos", "talk_1080p.mp4");
        var d3 = Path.Combine(Suites.Shared, "media", "videos", "talk_d3.mp4");
        if (!File.Exists(hd) || !File.Exists(d3)) { Console.Error.WriteLine("skip memory: talk_1080p.mp4 or talk_d3.mp4 not found"); return; }
        using var tmp = new BenchTemp();
        var k4 = tmp.File("k4.mp4");
        PipelineBench.RunTool("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", hd, "-t", "3", "-vf", "scale=3840:2160",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", k4);

        var big = RunDeid(k4, tmp.File("k4_out.mp4"));
        var extra = new Dictionary<string, object> { ["frames"] = big.Frames, ["target_mib"] = TargetMiB };
        r.Add(new("memory", "4K blur: deid process peak RSS", big.Peak.GetValueOrDefault("deid"), "MiB", extra));
        r.Add(new("memory", "4K blur: ffmpeg encoder peak RSS", big.Peak.GetValueOrDefault("encoder"), "MiB", extra));
        r.Add(new("memory", "4K blur: ffmpeg decoder peak RSS", big.Peak.GetValueOrDefault("decoder"), "MiB", extra));
        r.Add(new("memory", "4K blur: whole process tree peak RSS (sum)", big.TreePeak, "MiB", extra));

        var small = RunDeid(d3, tmp.File("d3_out.mp4"));
        r.Add(new("memory", "512² blur (talk_d3): frames per CPU second", small.Frames / small.CpuSeconds, "fps/cpu",
            new() { ["frames"] = small.Frames, ["cpu_s"] = small.CpuSeconds, ["wall_s"] = small.WallSeconds, ["peak_deid_mib"] = small.Peak.GetValueOrDefault("deid") }));
    }

    private sealed record Run1(long Frames, Dictionary<string, double> Peak, double TreePeak, double CpuSeconds, double WallSeconds);

    private static Run1 RunDeid(string input, string output)
    {
        var runner = Suites.DeidRunner(TimeSpan.FromMinutes(30));
        var psi = new ProcessStartInfo(runner.Executable) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in runner.PrefixArgs) psi.ArgumentList.Add(a);
        foreach (var a in new[] { "anonymize", input, "-o", output, "--mode", "blur" }) psi.ArgumentList.Add(a);
        var cpu0 = ChildrenCpuSeconds();
        var sw = Stopwatch.StartNew();
        var peak = new Dictionary<string, double>();
        double treePeak = 0;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEndAsync();
        while (!p.WaitForExit(200))
        {
            double sum = 0;
            foreach (var (pid, role) in Tree(p.Id))
            {
                if (Suites.RssKb(pid) is not long kb) continue;
                var mib = kb / 1024.0;
                sum += mib;
                peak[role] = Math.Max(peak.GetValueOrDefault(role), mib);
            }
            treePeak = Math.Max(treePeak, sum);
        }
        p.WaitForExit();
        var wall = sw.Elapsed.TotalSeconds;
        if (p.ExitCode != 0) throw new InvalidOperationException($"deid failed on {input} (exit {p.ExitCode}): {err.Result.Trim()}");
        var (_, o, _) = PipelineBench.RunTool("ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", output);
        var frames = long.TryParse(o.Trim().Trim(','), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : -1;
        return new Run1(frames, peak, treePeak, ChildrenCpuSeconds() - cpu0, wall);
    }

    /// <summary>The process and its descendants, each with its role: deid, decoder (ffmpeg writing pipe:1), encoder (reading pipe:0), other.</summary>
    private static List<(int Pid, string Role)> Tree(int root)
    {
        var list = new List<(int, string)> { (root, "deid") };
        for (var i = 0; i < list.Count; i++)
        {
            var pid = list[i].Item1;
            try
            {
                foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
                    foreach (var c in File.ReadAllText(Path.Combine(task, "children")).Split(' ', StringSplitOptions.RemoveEmptyEntries))
                    {
                        var child = int.Parse(c, CultureInfo.InvariantCulture);
                        var cmd = File.ReadAllText($"/proc/{child}/cmdline");
                        list.Add((child, cmd.Contains("pipe:0", StringComparison.Ordinal) ? "encoder" : cmd.Contains("pipe:1", StringComparison.Ordinal) ? "decoder" : "other"));
                    }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        }
        return list;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct RUsage
    {
        public long UserSec, UserUsec, SysSec, SysUsec;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = 14)] public long[] Rest;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int getrusage(int who, out RUsage usage);

    /// <summary>User + sys seconds of every waited-for descendant (deid and, through it, its ffmpeg processes).</summary>
    private static double ChildrenCpuSeconds()
    {
        const int RUSAGE_CHILDREN = -1;
        return getrusage(RUSAGE_CHILDREN, out var u) == 0 ? u.UserSec + u.UserUsec / 1e6 + u.SysSec + u.SysUsec / 1e6 : double.NaN;
    }
}
