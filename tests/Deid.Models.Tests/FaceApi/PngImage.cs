using System.Buffers.Binary;
using System.IO.Compression;
using TorchSharp;

namespace Deid.Models.Tests.FaceApi;

/// <summary>
/// Minimal decoder for the non-interlaced 8-bit PNGs in ../shared/golden/face-api (grayscale, gray+alpha, RGB, RGBA),
/// so these tests need no imaging library.
/// </summary>
internal static class PngImage
{
    /// <summary>[1,3,H,W] float RGB in 0..255 (grayscale replicated, alpha dropped).</summary>
    public static torch.Tensor Load(string path) => Load(File.ReadAllBytes(path), path);

    /// <summary>As <see cref="Load(string)"/>, from PNG bytes (name is for error messages).</summary>
    public static torch.Tensor Load(byte[] png, string name)
    {
        var (w, h, rgb) = Decode(png, name);
        var t = torch.tensor(rgb, new long[] { h, w, 3 }, torch.ScalarType.Byte);
        using var f = t.to_type(torch.ScalarType.Float32);
        t.Dispose();
        return f.permute(2, 0, 1).unsqueeze(0).contiguous();
    }

    public static (int Width, int Height, byte[] Rgb) Decode(string path) => Decode(File.ReadAllBytes(path), path);

    public static (int Width, int Height, byte[] Rgb) Decode(byte[] data, string path)
    {
        if (data.Length < 8 || data[1] != 'P' || data[2] != 'N' || data[3] != 'G') throw new InvalidDataException($"{path} is not a PNG");
        int width = 0, height = 0, bitDepth = 0, colorType = 0, interlace = 0;
        using var idat = new MemoryStream();
        for (var pos = 8; pos + 8 <= data.Length;)
        {
            var len = BinaryPrimitives.ReadInt32BigEndian(data.AsSpan(pos));
            var type = System.Text.Encoding.ASCII.GetString(data, pos + 4, 4);
            var body = data.AsSpan(pos + 8, len);
            if (type == "IHDR")
            {
                width = BinaryPrimitives.ReadInt32BigEndian(body);
                height = BinaryPrimitives.ReadInt32BigEndian(body[4..]);
                bitDepth = body[8]; colorType = body[9]; interlace = body[12];
            }
            else if (type == "IDAT") idat.Write(body);
            else if (type == "IEND") break;
            pos += 12 + len;
        }
        if (bitDepth != 8 || interlace != 0) throw new NotSupportedException($"{path}: only 8-bit non-interlaced PNGs are supported");
        var channels = colorType switch { 0 => 1, 2 => 3, 4 => 2, 6 => 4, _ => throw new NotSupportedException($"{path}: PNG colour type {colorType}") };
        idat.Position = 0;
        using var z = new ZLibStream(idat, CompressionMode.Decompress);
        var stride = width * channels;
        var raw = new byte[height * (stride + 1)];
        z.ReadExactly(raw);
        var pixels = new byte[height * stride];
        for (var y = 0; y < height; y++)
        {
            var filter = raw[y * (stride + 1)];
            var src = raw.AsSpan(y * (stride + 1) + 1, stride);
            var cur = pixels.AsSpan(y * stride, stride);
            var prev = y > 0 ? pixels.AsSpan((y - 1) * stride, stride) : new byte[stride];
            for (var i = 0; i < stride; i++)
            {
                int a = i >= channels ? cur[i - channels] : 0, b = prev[i], c = i >= channels ? prev[i - channels] : 0;
                cur[i] = (byte)(src[i] + filter switch
                {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => (a + b) / 2,
                    4 => Paeth(a, b, c),
                    _ => throw new InvalidDataException($"{path}: bad PNG filter {filter}"),
                });
            }
        }
        var rgb = new byte[width * height * 3];
        for (var p = 0; p < width * height; p++)
            for (var k = 0; k < 3; k++)
                rgb[p * 3 + k] = pixels[p * channels + (channels >= 3 ? k : 0)];
        return (width, height, rgb);
    }

    private static int Paeth(int a, int b, int c)
    {
        var p = a + b - c;
        int pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
}
