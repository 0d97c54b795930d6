using Deid.Models.FaceApi;
using Deid.TestSupport;
using TorchSharp;
using Xunit;
using static Deid.Models.Tests.FaceApi.FaceApiTestData;

namespace Deid.Models.Tests.FaceApi;

/// <summary>The recogniser on golden/face-api/people (8 people × 5 dlib chips) and through the FFHQ-crop entry point.</summary>
public class PeopleSeparationTests
{
    private static List<(string Person, string File)> People() =>
        Directory.GetDirectories(TestPaths.Golden("face-api", "people")).OrderBy(d => d, StringComparer.Ordinal)
            .SelectMany(d => Directory.GetFiles(d, "*.png").OrderBy(f => f, StringComparer.Ordinal).Select(f => (Path.GetFileName(d), f)))
            .ToList();

    /// <summary>Places a 150 chip where FaceRecognitionNet expects it inside a 256 FFHQ crop (inverse of CropChip), RGB [-1,1].</summary>
    internal static torch.Tensor ChipToFfhqCrop(torch.Tensor chip0to255)
    {
        using var scope = torch.NewDisposeScope();
        var (l, t, s) = FaceRecognitionNet.ChipInFfhqCrop;
        var theta = torch.tensor(new float[] { 1 / s, 0, (1 - 2 * l) / s - 1, 0, 1 / s, (1 - 2 * t) / s - 1 }, new long[] { 1, 2, 3 });
        var grid = torch.nn.functional.affine_grid(theta, new long[] { 1, 3, 256, 256 }, align_corners: false);
        var crop = torch.nn.functional.grid_sample(chip0to255 / 127.5f - 1f, grid, torch.GridSampleMode.Bilinear, torch.GridSamplePaddingMode.Zeros, align_corners: false);
        return crop.MoveToOuterDisposeScope();
    }

    [Fact]
    public void Same_person_pairs_are_closer_than_different_person_pairs()
    {
        RequireWeights(FaceRecognitionNet.ManifestName);
        using var net = FaceRecognitionNet.Load(ModelDir);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var people = People();
        Assert.Equal(40, people.Count);
        var batch = torch.cat(people.Select(p => PngImage.Load(p.File)).ToArray(), 0);
        var d = net.forward(batch);
        var dist = torch.cdist(d, d).data<float>().ToArray();

        var same = new List<float>(); var diff = new List<float>();
        for (var i = 0; i < people.Count; i++)
            for (var j = i + 1; j < people.Count; j++)
                (people[i].Person == people[j].Person ? same : diff).Add(dist[i * people.Count + j]);

        // Best single threshold over all pairs (balanced accuracy, since different pairs outnumber same pairs 7:1).
        var (bestT, bestAcc) = same.Concat(diff).Distinct().Select(th =>
            (th, acc: 0.5 * same.Count(v => v <= th) / same.Count + 0.5 * diff.Count(v => v > th) / diff.Count)).MaxBy(p => p.acc);
        var atFaceApi = 0.5 * same.Count(v => v < 0.6f) / same.Count + 0.5 * diff.Count(v => v >= 0.6f) / diff.Count;
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"people: mean same {same.Average():F3} (max {same.Max():F3}), mean different {diff.Average():F3} (min {diff.Min():F3}); " +
            $"best threshold {bestT:F3} balanced accuracy {bestAcc:P1}; at face-api's 0.6: {atFaceApi:P1}");
        Assert.True(same.Average() < diff.Average() - 0.2, $"mean same {same.Average():F3} vs mean different {diff.Average():F3}");
        Assert.True(bestAcc >= 0.95, $"best threshold accuracy {bestAcc:P1}");
    }

    [Fact]
    public void Encode_on_an_ffhq_crop_matches_the_descriptor_of_its_chip()
    {
        RequireWeights(FaceRecognitionNet.ManifestName);
        using var net = FaceRecognitionNet.Load(ModelDir);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var people = People();
        var a = PngImage.Load(people[0].File);   // amy
        var b = PngImage.Load(people[^1].File);  // another person
        var direct = net.forward(a);
        var viaCrop = net.Encode(ChipToFfhqCrop(a));
        var other = net.forward(b);
        var self = (direct - viaCrop).norm().item<float>();
        var cross = (other - viaCrop).norm().item<float>();
        TestContext.Current.TestOutputHelper?.WriteLine($"chip vs ffhq-crop descriptor distance {self:F3}; to another person {cross:F3}");
        Assert.True(self < 0.2f, $"distance {self:F3}");
        Assert.True(self < cross);
    }

    [Fact]
    public void Landmarks_on_an_ffhq_crop_map_back_to_the_chip_landmarks()
    {
        RequireWeights(FaceLandmark68Net.ManifestName);
        using var net = FaceLandmark68Net.Load(ModelDir);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var chip = PngImage.Load(People()[0].File);
        var onChip = net.forward(chip);                         // chip pixels (150)
        var onCrop = net.DetectOnCrops(ChipToFfhqCrop(chip));   // crop pixels (256)
        var (l, t, s) = FaceRecognitionNet.ChipInFfhqCrop;
        var expected = onChip * (s * 256f / 150f) + torch.tensor(new float[] { l * 256, t * 256 });
        var maxErr = (onCrop - expected).pow(2).sum(2).sqrt().max().item<float>();
        TestContext.Current.TestOutputHelper?.WriteLine($"max landmark error via the FFHQ crop: {maxErr:F2} px (256 crop)");
        Assert.True(maxErr < 2f, $"max error {maxErr:F2} px");
    }
}
