import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

// A Messages API server on loopback: POST /v1/messages answers with the text it is given,
// or with an error status, as the real API does.

export interface FakeAnthropic {
  url: string
  reply: string
  status: number
  requests: { model: string; system: string; content: string; apiKey: string | undefined }[]
  close(): Promise<void>
}

export async function startFakeAnthropic(): Promise<FakeAnthropic> {
  const state = { reply: 'The batch did its work.', status: 200, requests: [] as FakeAnthropic['requests'] }
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    state.requests.push({
      model: body.model,
      system: body.system,
      content: body.messages[0].content,
      apiKey: (req.headers['x-api-key'] as string | undefined) ?? req.headers.authorization?.replace(/^Bearer /, ''),
    })
    res.setHeader('content-type', 'application/json')
    if (state.status !== 200) {
      res.statusCode = state.status
      return res.end(JSON.stringify({ type: 'error', error: { type: 'api_error', message: `injected ${state.status}` } }))
    }
    res.end(
      JSON.stringify({
        id: 'msg_test',
        type: 'message',
        role: 'assistant',
        model: body.model,
        content: [{ type: 'text', text: state.reply }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: 10, output_tokens: 20 },
      }),
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  })
}
