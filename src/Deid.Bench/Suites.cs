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
    };

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
    public static long? PeakRssKb()
    {
        if (!File.Exists("/proc/self/status")) return null;
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1]);
        return null;
    }
}
