using Xunit;
using System.Text.Json;
using Deid.Models.FaceApi;
using Deid.TestSupport;
using TorchSharp;

namespace Deid.Models.Tests.FaceApi;

internal static class FaceApiTestData
{
    public static string ModelDir => TestPaths.FaceApiModels;

    /// <summary>Weights come from npm (deid models fetch); without them the parity tests cannot run.</summary>
    public static void RequireWeights(string manifest)
    {
        if (TestPaths.MissingFaceApiWeights(manifest) is { } why) Assert.Skip(why);
    }

    /// <summary>A line in the test's output (shown with --output detailed, and beside a failure).</summary>
    public static void Log(string s) => TestContext.Current.TestOutputHelper?.WriteLine(s);

    public static string Image(string name) => TestPaths.Golden("face-api", "images", name);

    public static float[] Descriptor(string json) =>
        JsonSerializer.Deserialize<float[]>(File.ReadAllText(TestPaths.Golden("face-api", "data", json)))!;

    public static (float X, float Y)[] Landmarks(string json) =>
        JsonSerializer.Deserialize<List<Pt>>(File.ReadAllText(TestPaths.Golden("face-api", "data", json)))!.Select(p => (p.x, p.y)).ToArray();

    /// <summary>Per-face landmark lists (faces.jpg golden data).</summary>
    public static List<(float X, float Y)[]> LandmarkSets(string json) =>
        JsonSerializer.Deserialize<List<List<Pt>>>(File.ReadAllText(TestPaths.Golden("face-api", "data", json)))!
            .Select(f => f.Select(p => (p.x, p.y)).ToArray()).ToList();

    public static List<float[]> DescriptorSets(string json) =>
        JsonSerializer.Deserialize<List<float[]>>(File.ReadAllText(TestPaths.Golden("face-api", "data", json)))!;

    private sealed record Pt(float x, float y);
}
