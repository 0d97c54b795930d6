using Xunit;
using Deid.Models.FaceApi;
using TorchSharp;
using static Deid.Models.Tests.FaceApi.FaceApiTestData;

namespace Deid.Models.Tests.FaceApi;

public class FaceRecognitionNetTests
{
    [Theory]
    [InlineData("face1.png", "faceDescriptor1.json")]
    [InlineData("face2.png", "faceDescriptor2.json")]
    [InlineData("face_rectangular.png", "faceDescriptorRect.json")]
    public void Descriptor_matches_face_api_js(string image, string golden)
    {
        RequireWeights(FaceRecognitionNet.ManifestName);
        using var net = FaceRecognitionNet.Load(ModelDir);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var x = PngImage.Load(Image(image));
        var got = net.forward(x).data<float>().ToArray();
        var want = Descriptor(golden);
        Assert.Equal(128, got.Length);
        var maxDiff = got.Zip(want, (a, b) => Math.Abs(a - b)).Max();
        TestContext.Current.TestOutputHelper?.WriteLine($"{image}: max |diff| = {maxDiff:F5}");
        Assert.True(maxDiff < 0.02f, $"{image}: max component difference {maxDiff:F4} >= 0.02");
    }

    [Fact]
    public void Encode_takes_ffhq_crops_in_minus1_1_and_is_differentiable()
    {
        RequireWeights(FaceRecognitionNet.ManifestName);
        using var net = FaceRecognitionNet.Load(ModelDir);
        using var scope = torch.NewDisposeScope();
        var crops = (torch.rand(2, 3, 256, 256) * 2 - 1).requires_grad_(true);
        IIdentityEncoder enc = net;
        var codes = enc.Encode(crops);
        Assert.Equal(new long[] { 2, enc.Dim }, codes.shape);
        codes.sum().backward();
        Assert.True(crops.grad is not null && crops.grad.abs().sum().item<float>() > 0);
        Assert.All(net.parameters(), p => Assert.False(p.requires_grad));
    }

    [Fact]
    public void Missing_weights_give_a_clear_error()
    {
        using var dir = new Deid.TestSupport.TempDir();
        var ex = Assert.Throws<FileNotFoundException>(() => FaceRecognitionNet.Load(dir.Path));
        Assert.Contains("deid models fetch", ex.Message);
    }
}
