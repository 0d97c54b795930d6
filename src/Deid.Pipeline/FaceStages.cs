using Deid.Faces;
using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>Strong blur of the whole aligned head crop; works in place.</summary>
public sealed class BlurStage(int batchSize = 8) : IFaceStage
{
    public string Name => "blur";
    public int BatchSize { get; } = Math.Max(1, batchSize);
    // Twelve samples across, smoothed: a larger crop would only cost align, blur and paste time for the same picture.
    public int CropSize => 64;
    public bool SmoothOutput => true;

    public IReadOnlyList<Mat> Process(IReadOnlyList<FaceCrop> batch, CancellationToken ct)
    {
        var result = new Mat[batch.Count];
        for (var i = 0; i < batch.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            FaceObfuscation.Blur(batch[i].Crop);
            result[i] = batch[i].Crop;
        }
        return result;
    }

    public void Dispose() { }
}

/// <summary>Pixelates the whole aligned crop, i.e. the whole head region, not only the inner face.</summary>
public sealed class PixelateStage(int batchSize = 8, int blocks = 10) : IFaceStage
{
    public string Name => "pixelate";
    public int BatchSize { get; } = Math.Max(1, batchSize);

    public IReadOnlyList<Mat> Process(IReadOnlyList<FaceCrop> batch, CancellationToken ct)
    {
        var result = new Mat[batch.Count];
        for (var i = 0; i < batch.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            FaceObfuscation.Pixelate(batch[i].Crop, blocks);
            result[i] = batch[i].Crop;
        }
        return result;
    }

    public void Dispose() { }
}

/// <summary>Returns every crop unchanged: exercises align → paste for round-trip tests.</summary>
public sealed class PassthroughStage(int batchSize = 8) : IFaceStage
{
    public string Name => "passthrough";
    public int BatchSize { get; } = Math.Max(1, batchSize);

    public IReadOnlyList<Mat> Process(IReadOnlyList<FaceCrop> batch, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        return batch.Select(c => c.Crop).ToArray();
    }

    public void Dispose() { }
}

public static class FaceStages
{
    /// <summary>The built-in obfuscation stages; latent mode's stage needs loaded networks and is made by <see cref="DeidEngine"/>.</summary>
    public static IFaceStage Create(AnonymizeOptions options) => options.Mode switch
    {
        AnonymizeMode.Blur => new BlurStage(options.BatchSize),
        AnonymizeMode.Pixelate => new PixelateStage(options.BatchSize),
        AnonymizeMode.Passthrough => new PassthroughStage(options.BatchSize),
        _ => throw new PipelineException($"mode {options.Mode} needs a loaded engine (DeidEngine)"),
    };
}
