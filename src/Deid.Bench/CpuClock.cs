namespace Deid.Bench;

/// <summary>CPU time of this process, for benches that must say what a span cost when stages share cores.</summary>
internal static class CpuClock
{
    private const double TicksPerSecond = 100; // USER_HZ, 100 on every Linux ABI .NET runs on

    /// <summary>
    /// User + system seconds of this process plus those of its finished (waited-for) children, e.g. ffmpeg
    /// (/proc/self/stat fields 14-17; 10 ms ticks). Elsewhere than Linux, this process's own time.
    /// </summary>
    public static double Seconds()
    {
        if (!File.Exists("/proc/self/stat")) return OwnSeconds();
        var stat = File.ReadAllText("/proc/self/stat");
        // Fields after the parenthesised command name: state is field 3; utime, stime, cutime, cstime are 14-17.
        var rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(rest[11]) + long.Parse(rest[12]) + long.Parse(rest[13]) + long.Parse(rest[14])) / TicksPerSecond;
    }

    /// <summary>This process's own threads only (CLOCK_PROCESS_CPUTIME_ID, ns resolution): for one call's cost.</summary>
    public static double OwnSeconds() => clock_gettime(ProcessCpuTimeId, out var ts) == 0
        ? ts.Sec + ts.Nsec * 1e-9
        : System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;

    private const int ProcessCpuTimeId = 2; // CLOCK_PROCESS_CPUTIME_ID on Linux

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern int clock_gettime(int clock, out Timespec ts);

    private struct Timespec { public long Sec; public long Nsec; }
}
