namespace Deid.Cli;

/// <summary>One clear line on stderr and a non-zero exit code instead of a stack trace (DEID_DEBUG=1 shows it).</summary>
public static class CliErrors
{
    public const int Failure = 1;
    public const int Cancelled = 130;

    public static int Report(Exception e)
    {
        if (e is AggregateException { InnerExceptions.Count: 1 } agg) e = agg.InnerException!;
        if (e is OperationCanceledException)
        {
            Console.Error.WriteLine("deid: cancelled");
            return Cancelled;
        }
        Console.Error.WriteLine($"deid: error: {e.Message}");
        if (Environment.GetEnvironmentVariable("DEID_DEBUG") == "1") Console.Error.WriteLine(e);
        return Failure;
    }
}
