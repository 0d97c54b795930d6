using Xunit;

namespace Deid.TestSupport;

/// <summary>Where the repository, ../shared and scratch space are, seen from a test binary.</summary>
public static class TestPaths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>../shared beside the repository (read-only media and golden references).</summary>
    public static string Shared { get; } = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));

    // Each path into ../shared skips the calling test, with the reason, when that file or folder is not there:
    // a clone without ../shared runs everything else. CI allows no such skip (.ci/run).
    public static string Video(string name) => InShared(Path.Combine(Shared, "media", "videos", name));
    public static string Identity(string name) => InShared(Path.Combine(Shared, "media", "identities", name));
    public static string Golden(params string[] parts) => InShared(Path.Combine([Shared, "golden", .. parts]));

    /// <summary>Skip reason of a test that needs ../shared; <see cref="InShared"/> and .ci/run's allow-list share it.</summary>
    public const string MissingSharedReason = "missing in ../shared (the read-only test media beside the repository)";

    private static string InShared(string path)
    {
        if (!File.Exists(path) && !Directory.Exists(path)) Assert.Skip($"{path} {MissingSharedReason}");
        return path;
    }

    /// <summary>The models directory the tests read (DEID_MODELS or models/ in the repo).</summary>
    public static string Models =>
        Environment.GetEnvironmentVariable("DEID_MODELS") is { Length: > 0 } m ? m : Path.Combine(RepoRoot, "models");

    /// <summary>The face-api.js weights folder of <see cref="Models"/> (filled by `deid models fetch`).</summary>
    public static string FaceApiModels => Path.Combine(Models, "face-api");

    /// <summary>Why a test needing face-api's <paramref name="manifest"/> must skip, or null when the weights are there.</summary>
    public static string? MissingFaceApiWeights(string manifest) =>
        File.Exists(Path.Combine(FaceApiModels, manifest)) ? null
            : $"face-api weights {manifest} missing in {FaceApiModels}; run `dotnet run --project src/Deid.Cli -- models fetch` (or `make setup`)";

    public const string DlibPredictor = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat";

    private static string FindRepoRoot()
    {
        var baked = typeof(TestPaths).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
            .Cast<System.Reflection.AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == "DeidRepoRoot")?.Value;
        if (baked != null && File.Exists(Path.Combine(baked, "Deid.sln")))
            return baked;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Deid.sln")))
                return d.FullName;
        // Built with DEID_ARTIFACTS outside the tree: fall back to the working directory.
        for (var d = new DirectoryInfo(Directory.GetCurrentDirectory()); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Deid.sln")))
                return d.FullName;
        throw new InvalidOperationException("cannot find the repository root (Deid.sln) from " + AppContext.BaseDirectory);
    }
}

/// <summary>A scratch folder removed when disposed.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("deid-test-").FullName;
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
