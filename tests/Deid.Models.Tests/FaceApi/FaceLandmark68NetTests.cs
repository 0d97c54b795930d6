using Xunit;
using Deid.Models.FaceApi;
using TorchSharp;
using static Deid.Models.Tests.FaceApi.FaceApiTestData;

namespace Deid.Models.Tests.FaceApi;

public class FaceLandmark68NetTests
{
    [Theory]
    [InlineData("face1.png", "faceLandmarkPositions1.json")]
    [InlineData("face2.png", "faceLandmarkPositions2.json")]
    [InlineData("face_rectangular.png", "faceLandmarkPositionsRect.json")]
    public void Landmarks_match_face_api_js(string image, string golden)
    {
        RequireWeights(FaceLandmark68Net.ManifestName);
        using var net = FaceLandmark68Net.Load(ModelDir);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var x = PngImage.Load(Image(image));
        var got = net.forward(x);
        Assert.Equal(new long[] { 1, 68, 2 }, got.shape);
        var pts = got.data<float>().ToArray();
        var want = Landmarks(golden);
        var dists = Enumerable.Range(0, 68).Select(i => MathF.Sqrt(MathF.Pow(pts[2 * i] - want[i].X, 2) + MathF.Pow(pts[2 * i + 1] - want[i].Y, 2))).ToArray();
        TestContext.Current.TestOutputHelper?.WriteLine($"{image}: landmark distance mean {dists.Average():F3} px, max {dists.Max():F3} px");
        if (image == "face_rectangular.png")
        {
            // 122×178: this golden file was not made by face-api.js 1.7.15; 1.7.15 itself (in Chromium, see
            // FaceApiChromiumParityTests) is mean 0.487 / max 1.236 px from it, ours mean 0.508 / max 1.290 px.
            Assert.True(dists.Average() < 0.55f, $"{image}: mean landmark distance {dists.Average():F3} px");
            Assert.True(dists.Max() < 1.35f, $"{image}: max landmark distance {dists.Max():F3} px");
        }
        else Assert.True(dists.Max() < 1f, $"{image}: max landmark distance {dists.Max():F3} px >= 1");
    }

    [Theory]
    [InlineData("face1.png", "faceLandmarkPositions1Tiny.json")]
    [InlineData("face2.png", "faceLandmarkPositions2Tiny.json")]
    [InlineData("face_rectangular.png", "faceLandmarkPositionsRectTiny.json")]
    public void Tiny_landmarks_match_face_api_js(string image, string golden)
    {
        RequireWeights(FaceLandmark68Net.TinyManifestName);
        using var net = FaceLandmark68Net.LoadTiny(ModelDir);
        Assert.True(net.IsTiny);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var pts = net.forward(PngImage.Load(Image(image))).data<float>().ToArray();
        var want = Landmarks(golden);
        var dists = Enumerable.Range(0, 68).Select(i => MathF.Sqrt(MathF.Pow(pts[2 * i] - want[i].X, 2) + MathF.Pow(pts[2 * i + 1] - want[i].Y, 2))).ToArray();
        TestContext.Current.TestOutputHelper?.WriteLine($"tiny {image}: landmark distance mean {dists.Average():F3} px, max {dists.Max():F3} px");
        // As for the full network: face-api.js 1.7.15 itself is mean 2.500 / max 4.959 px from the tiny rectangular
        // golden file (ours 2.382 / 4.799), so it is held to that, not to 1 px.
        if (image == "face_rectangular.png") { Assert.True(dists.Average() < 2.55f); Assert.True(dists.Max() < 5.05f); }
        else Assert.True(dists.Max() < 1f, $"{image}: max landmark distance {dists.Max():F3} px >= 1");
    }

    [Fact]
    public void DetectOnCrops_returns_crop_pixel_coordinates_and_gradients()
    {
        RequireWeights(FaceLandmark68Net.ManifestName);
        using var net = FaceLandmark68Net.Load(ModelDir);
        using var scope = torch.NewDisposeScope();
        var crops = (torch.rand(2, 3, 256, 256) * 2 - 1).requires_grad_(true);
        var lm = net.DetectOnCrops(crops);
        Assert.Equal(new long[] { 2, 68, 2 }, lm.shape);
        lm.sum().backward();
        Assert.True(crops.grad is not null && crops.grad.abs().sum().item<float>() > 0);
    }
}
