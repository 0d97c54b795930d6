using Deid.Models;
using OpenCvSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace Deid.Pipeline;

/// <summary>Batched conversion between OpenCV BGR crops and the networks' RGB [-1,1] tensors: one copy per crop, straight into the batch tensor.</summary>
public static class MatTensors
{
    /// <summary>Equal-sized 8-bit BGR crops → <c>[B,3,H,W]</c> float RGB in [-1,1] on <paramref name="device"/>.</summary>
    public static unsafe Tensor FromCrops(IReadOnlyList<Mat> crops, Device? device = null)
    {
        if (crops.Count == 0) throw new ArgumentException("no crops to convert");
        int h = crops[0].Height, w = crops[0].Width;
        long plane = (long)h * w * 3;
        using var scope = NewDisposeScope();
        var hwc = empty([crops.Count, h, w, 3], ScalarType.Byte);
        var dst = hwc.bytes;
        fixed (byte* d = dst)
        {
            for (var i = 0; i < crops.Count; i++)
            {
                var m = crops[i];
                if (m.Width != w || m.Height != h || m.Type() != MatType.CV_8UC3)
                    throw new ArgumentException($"crop {i} is {m.Width}x{m.Height} {m.Type()}, expected {w}x{h} 8-bit BGR");
                var rowBytes = w * 3;
                for (var y = 0; y < h; y++)
                    Buffer.MemoryCopy((void*)m.Ptr(y), d + i * plane + (long)y * rowBytes, rowBytes, rowBytes);
            }
        }
        var input = device is null ? hwc : hwc.to(device);
        return CropTensors.FromBgrHwc(input).MoveToOuterDisposeScope();
    }

    /// <summary><c>[B,3,H,W]</c> RGB in [-1,1] (any device) → B new 8-bit BGR Mats (clamped, rounded). The caller owns them.</summary>
    public static unsafe Mat[] ToCrops(Tensor rgb)
    {
        using var scope = NewDisposeScope();
        var hwc = CropTensors.ToBgrHwc(rgb);
        int b = (int)hwc.shape[0], h = (int)hwc.shape[1], w = (int)hwc.shape[2];
        long plane = (long)h * w * 3;
        var src = hwc.bytes;
        var result = new Mat[b];
        fixed (byte* s = src)
        {
            for (var i = 0; i < b; i++)
            {
                var m = new Mat(h, w, MatType.CV_8UC3);
                Buffer.MemoryCopy(s + i * plane, (void*)m.Data, plane, plane);
                result[i] = m;
            }
        }
        return result;
    }
}
