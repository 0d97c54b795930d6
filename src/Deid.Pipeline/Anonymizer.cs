namespace Deid.Pipeline;

/// <summary>One clip, one engine: loads what the job needs, runs it, releases everything (see <see cref="DeidEngine"/>).</summary>
public static class Anonymizer
{
    /// <param name="stage">A face stage to use instead of the one <paramref name="options"/> names (tests); the caller keeps ownership.</param>
    public static async Task<AnonymizeReport> RunAsync(string input, string output, AnonymizeOptions options,
        IProgress<PipelineProgress>? progress = null, CancellationToken ct = default, IFaceStage? stage = null)
    {
        DeidEngine.ValidateOptions(options);
        using var engine = new DeidEngine(options.Device, options.ModelDir);
        return await engine.AnonymizeAsync(input, output, options, progress, ct, stage).ConfigureAwait(false);
    }

    /// <summary>Fails early and clearly when CUDA is asked for but cannot be used.</summary>
    public static void CheckDevice(string device)
    {
        try { Deid.Models.DeviceSelection.Resolve(device); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            throw new PipelineException(e.Message, e);
        }
    }
}
