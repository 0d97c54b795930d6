using Deid.TestSupport;
using Deid.TestSupport.Fuzz;

namespace Deid.Cli.Tests;

/// <summary>
/// The seeded fuzz corpus (issue 12): damaged copies of a real clip (bit flips, truncations, swapped and resized MP4
/// boxes, zeroed moov/mdat ranges) through the real `deid anonymize` process. Every case must end in time with exit 0
/// and a complete output of the frames ffmpeg can decode, or exit 1 and one stderr line; `make bench ARGS=fuzz` runs 500.
/// </summary>
public sealed class FuzzTests
{
    public const int Seed = 12;
    public const int Cases = 50;

    private static readonly Lazy<(string Dir, IReadOnlyList<string> Seeds)> Corpus = new(() =>
    {
        var dir = Path.Combine(Path.GetTempPath(), $"deid-fuzz-seeds-{Environment.ProcessId}");
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir, true); } catch (IOException) { } };
        return (dir, FuzzCorpus.MakeSeeds(TestPaths.Video("talk_small.mp4"), dir));
    });

    /// <summary>Even and odd case ids: two test classes, so the two halves run in parallel (each case is one deid process).</summary>
    public static TheoryData<int> EvenCaseIds() => new(Enumerable.Range(0, Cases).Where(i => i % 2 == 0));
    public static TheoryData<int> OddCaseIds() => new(Enumerable.Range(0, Cases).Where(i => i % 2 == 1));

    [Fact]
    public void Corpus_IsReproducible()
    {
        if (!File.Exists(TestPaths.Video("talk_small.mp4"))) Assert.Skip("shared clip talk_small.mp4 missing");
        var seeds = Corpus.Value.Seeds;
        var a = FuzzCorpus.Generate(Seed, seeds, 16).ToList();
        var b = FuzzCorpus.Generate(Seed, seeds, 16).ToList();
        Assert.Equal(a.Select(c => c.Description), b.Select(c => c.Description));
        Assert.All(a.Zip(b), p => Assert.True(p.First.Data.AsSpan().SequenceEqual(p.Second.Data)));
        // every kind of damage is in the first cases, and each case differs from its seed
        Assert.Equal(FuzzCorpus.Kinds.Length, a.Take(FuzzCorpus.Kinds.Length * 2).Select(c => c.Kind).Where(FuzzCorpus.Kinds.Contains).Distinct().Count());
        Assert.All(a, c => Assert.False(c.Data.AsSpan().SequenceEqual(File.ReadAllBytes(seeds.First(s => Path.GetFileName(s) == c.Seed)))));
    }

    [Theory]
    [MemberData(nameof(EvenCaseIds))]
    public void DamagedInput_EndsCleanly(int id) => RunCase(id);

    /// <summary>
    /// Case 0 flips bits in the key frame: HOG finds no face in the concealed pictures, yet a face outline and features are
    /// plainly visible in them. Every damaged frame must leave blurred whole, and the report must say so.
    /// </summary>
    [Fact]
    public void DamagedFrames_AreBlurredWhole()
    {
        if (!File.Exists(TestPaths.Video("talk_small.mp4"))) Assert.Skip("shared clip talk_small.mp4 missing");
        var c = FuzzCorpus.Generate(Seed, Corpus.Value.Seeds, 1, first: 0).Single();
        using var tmp = new TempDir();
        var input = tmp.File(c.FileName);
        File.WriteAllBytes(input, c.Data);
        var (output, report) = (tmp.File("out.mp4"), tmp.File("report.json"));
        var dll = Path.Combine(AppContext.BaseDirectory, "deid.dll");
        var r = Tool.Run("dotnet", dll, "anonymize", input, "-o", output, "--mode", "blur", "--workers", "1", "--report", report);
        Assert.True(r.Code == 0, r.StdErr);
        Assert.Contains("blurred whole", r.StdErr);
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(report));
        var frames = json.RootElement.GetProperty("frames").EnumerateArray()
            .Select(f => f.TryGetProperty("damaged", out var d) && d.GetBoolean()).ToList();
        Assert.Equal(frames.Count(d => d), json.RootElement.GetProperty("totals").GetProperty("damagedBlurred").GetInt64());
        Assert.True(frames[0], "the damaged key frame");

        using var before = new Deid.Media.VideoReader(input);
        using var after = new Deid.Media.VideoReader(output);
        var i = 0;
        foreach (var (b, a) in before.ReadFrames(TestContext.Current.CancellationToken).Zip(after.ReadFrames(TestContext.Current.CancellationToken)))
        {
            using (b) using (a)
                if (frames[i]) Assert.True(Detail(a.Image) < 0.1 * Detail(b.Image) + 1, $"frame {i}: damaged but not blurred ({Detail(a.Image):F1} vs {Detail(b.Image):F1})");
            i++;
        }
        Assert.Equal(frames.Count, i);
    }

    /// <summary>Variance of the Laplacian of the grey image: edges and texture (a blurred frame has almost none).</summary>
    private static double Detail(OpenCvSharp.Mat bgr)
    {
        using var grey = bgr.CvtColor(OpenCvSharp.ColorConversionCodes.BGR2GRAY);
        using var lap = grey.Laplacian(OpenCvSharp.MatType.CV_64F);
        OpenCvSharp.Cv2.MeanStdDev(lap, out _, out var sd);
        return sd.Val0 * sd.Val0;
    }

    internal static void RunCase(int id)
    {
        if (!File.Exists(TestPaths.Video("talk_small.mp4"))) Assert.Skip("shared clip talk_small.mp4 missing");
        var c = FuzzCorpus.Generate(Seed, Corpus.Value.Seeds, 1, first: id).Single();
        using var tmp = new TempDir();
        var outcome = FuzzRunner.BesideTests().Run(c, tmp.Path);
        Assert.True(outcome.Ok, outcome.Summary + "\nstderr: " + outcome.StdErr);
    }
}

/// <summary>The odd-numbered half of <see cref="FuzzTests"/>' corpus.</summary>
public sealed class FuzzTestsOdd
{
    [Theory]
    [MemberData(nameof(FuzzTests.OddCaseIds), MemberType = typeof(FuzzTests))]
    public void DamagedInput_EndsCleanly(int id) => FuzzTests.RunCase(id);
}
