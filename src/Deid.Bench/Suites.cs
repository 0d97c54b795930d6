namespace Deid.Bench;

public static class Suites
{
    /// <summary>Name and entry of each suite; `make bench ARGS=pipeline` runs one.</summary>
    public static readonly List<(string Name, Action<BenchResults> Run)> All = new()
    {
        ("pipeline", PipelineBench.Run),
        ("models", ModelBench.Run),
        ("latent", LatentBench.Run),
        ("detectors", DetectorBench.Run),
        ("batch", BatchBench.Run),
        ("reenact", ReenactBench.Run),
        ("memory", MemoryBench.Run),
        ("training", TrainingBench.Run),
        // not part of a plain `make bench`: long-running robustness suites, run by name
        ("fuzz", FuzzBench.Run),
        ("soak", SoakBench.Run),
        // the pipeline suite's coverage part alone (HOG stream finder against the full-frame path on every shared clip)
        ("coverage", PipelineBench.Coverage),
    };

    /// <summary>Suites a plain `make bench` (no ARGS) leaves out.</summary>
    public static readonly HashSet<string> OnlyByName = new(StringComparer.OrdinalIgnoreCase) { "fuzz", "soak", "coverage" };

    /// <summary>The built deid executable ($DEID_EXE, else artifacts/bin/Deid.Cli/release/deid) as a fuzz/soak runner.</summary>
    public static Deid.TestSupport.Fuzz.FuzzRunner DeidRunner(TimeSpan timeout)
    {
        var exe = DeidExecutable();
        return exe.EndsWith(".dll", StringComparison.Ordinal)
            ? new() { Executable = "dotnet", PrefixArgs = [exe], Timeout = timeout }
            : new() { Executable = exe, Timeout = timeout };
    }

    public static string DeidExecutable()
    {
        if (Environment.GetEnvironmentVariable("DEID_EXE") is { Length: > 0 } e) return e;
        var artifacts = Environment.GetEnvironmentVariable("DEID_ARTIFACTS") is { Length: > 0 } a ? a : Path.Combine(RepoRoot, "artifacts");
        var dir = Path.Combine(artifacts, "bin", "Deid.Cli", "release");
        var exe = Path.Combine(dir, "deid");
        if (File.Exists(exe)) return exe;
        var dll = Path.Combine(dir, "deid.dll");
        if (File.Exists(dll)) return dll;
        throw new FileNotFoundException($"the deid executable is not built ({exe}); run `make setup`");
    }

    public static string RepoRoot { get; } = FindRoot();
    public static string Shared => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));

    private static string FindRoot()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
            for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "Deid.sln"))) return d.FullName;
        return Directory.GetCurrentDirectory();
    }

    /// <summary>This process's peak resident memory (VmHWM) in KiB; null where /proc has none.</summary>
    public static long? PeakRssKb() => StatusKb("self", "VmHWM");

    /// <summary>A process's resident memory now (VmRSS) in KiB; null where /proc has none or it has exited.</summary>
    public static long? RssKb(int pid) => StatusKb(pid.ToString(System.Globalization.CultureInfo.InvariantCulture), "VmRSS");

    /// <summary>One "Name:  N kB" field of /proc/PID/status.</summary>
    private static long? StatusKb(string pid, string field)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
                if (line.StartsWith(field + ":", StringComparison.Ordinal))
                    return long.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>This process's peak resident memory in MB; NaN where /proc has none.</summary>
    public static double PeakRssMb() => PeakRssKb() is { } kb ? kb / 1024.0 : double.NaN;

    /// <summary>Writing 5 to clear_refs (Linux ≥ 4.0) resets VmHWM to the current RSS, so the next peak is one stage's own.</summary>
    public static bool ResetPeakRss()
    {
        try
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
