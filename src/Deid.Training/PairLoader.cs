using System.Threading.Channels;
using static TorchSharp.torch;

namespace Deid.Training;

/// <summary>
/// Streams (image, w) pairs of a dataset split in a shuffled order: epoch e is a permutation of the split drawn from
/// (seed, e), and the stream is a pure function of (split, seed, position), so a resumed run continues from the
/// position it saved and sees exactly the images the uninterrupted run would have. PNGs are decoded on a background
/// task into a bounded channel (back-pressure: at most <c>prefetch</c> decoded images wait in memory).
/// </summary>
public sealed class PairLoader : IDisposable
{
    private readonly ImageLatentDataset _data;
    private readonly int[] _split;
    private readonly long _seed;
    private readonly Channel<(float[] Image, float[] W)> _channel;
    private readonly CancellationTokenSource _cts = new();
    private readonly Task _producer;

    /// <summary>Pairs consumed so far (the resume point).</summary>
    public long Position { get; private set; }

    public PairLoader(ImageLatentDataset data, IReadOnlyList<int> split, long seed, long startPosition = 0, int prefetch = 64)
    {
        if (split.Count == 0) throw new ArgumentException("the training split is empty");
        _data = data;
        _split = split.ToArray();
        _seed = seed;
        Position = startPosition;
        _channel = Channel.CreateBounded<(float[], float[])>(new BoundedChannelOptions(Math.Max(1, prefetch))
        {
            SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait,
        });
        _producer = Task.Run(() => Produce(startPosition, _cts.Token));
    }

    /// <summary>Dataset index at stream position <paramref name="position"/>.</summary>
    public static int IndexAt(IReadOnlyList<int> split, long seed, long position)
    {
        long epoch = position / split.Count;
        return Permutation(split, seed, epoch)[(int)(position % split.Count)];
    }

    internal static int[] Permutation(IReadOnlyList<int> split, long seed, long epoch)
    {
        var perm = split.ToArray();
        var rng = new Random(unchecked((int)(seed * 1_000_003L + epoch * 7919L + 17)));
        for (int i = perm.Length - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (perm[i], perm[j]) = (perm[j], perm[i]);
        }
        return perm;
    }

    private async Task Produce(long position, CancellationToken ct)
    {
        try
        {
            long epoch = -1;
            int[] perm = [];
            for (long pos = position; ; pos++)
            {
                long e = pos / _split.Length;
                if (e != epoch) { epoch = e; perm = Permutation(_split, _seed, e); }
                int index = perm[(int)(pos % _split.Length)];
                var img = _data.ReadImage(index);
                var w = _data.W(index).ToArray();
                await _channel.Writer.WriteAsync((img, w), ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) { }
        catch (Exception e) { _channel.Writer.TryComplete(e); return; }
        _channel.Writer.TryComplete();
    }

    /// <summary>The next <paramref name="n"/> pairs: images <c>[n,3,S,S]</c> in [-1,1] and w <c>[n,D]</c>, on <paramref name="device"/>.</summary>
    public (Tensor Images, Tensor W) Next(int n, Device? device = null)
    {
        int s = _data.Size, d = _data.StyleDim;
        var img = new float[n * 3 * s * s];
        var w = new float[n * d];
        for (int i = 0; i < n; i++)
        {
            (float[] Image, float[] W) item;
            try { item = _channel.Reader.ReadAsync().AsTask().GetAwaiter().GetResult(); }
            catch (ChannelClosedException e) when (e.InnerException is not null) { throw e.InnerException; }
            item.Image.CopyTo(img, i * 3 * s * s);
            item.W.CopyTo(w, i * d);
        }
        Position += n;
        var ti = tensor(img, new long[] { n, 3, s, s });
        var tw = tensor(w, new long[] { n, d });
        if (device is null || device.type == TorchSharp.DeviceType.CPU) return (ti, tw);
        using (ti) using (tw) return (ti.to(device), tw.to(device));
    }

    public void Dispose()
    {
        _cts.Cancel();
        try { _producer.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
        _cts.Dispose();
    }
}
