// The demo application's text. Eight subjects, five facts each; every fact is said three ways
// (paraphrases with little word overlap) and asked once more as a query in other words again.
// Rows are built from a fact's paraphrase plus a sentence of the subject's background, so
// the corpus has clear semantic structure: near-duplicates within a fact, related rows within
// a subject, unrelated rows across subjects. A labelled query's relevant rows are those built
// from its fact.

export interface Fact {
  id: string
  topic: string
  paraphrases: [string, string, string]
  query: string
}

export interface Subject {
  name: string
  background: string[]
  facts: Fact[]
}

export const SUBJECTS: Subject[] = [
  {
    name: 'Cooking',
    background: [
      'Good ingredients matter more than fancy equipment.',
      'Taste as you go and adjust the seasoning at the end.',
      'A sharp knife makes prep faster and safer.',
    ],
    facts: [
      {
        id: 'pasta-water',
        topic: 'Salting pasta water',
        paraphrases: [
          'Salt the pasta water generously before the noodles go in.',
          'Add a good handful of salt to the boiling water so the spaghetti is seasoned.',
          'Noodles only absorb flavour while cooking, so season the pot heavily.',
        ],
        query: 'how much salt should go in the pot when boiling spaghetti',
      },
      {
        id: 'sauce-simmer',
        topic: 'Simmering tomato sauce',
        paraphrases: [
          'Simmer the tomato sauce gently for at least twenty minutes.',
          'Let the marinara cook slowly on low heat so it thickens.',
          'A long gentle bubble reduces the tomatoes into a rich sauce.',
        ],
        query: 'how long do I cook marinara until it gets thick',
      },
      {
        id: 'steak-rest',
        topic: 'Resting meat',
        paraphrases: [
          'Let the steak rest for five minutes after it leaves the pan.',
          'Resting grilled beef keeps the juices inside the meat.',
          'Wait a few minutes before cutting a roast so it stays moist.',
        ],
        query: 'should I let a cooked sirloin sit on the board',
      },
      {
        id: 'bread-proof',
        topic: 'Proofing dough',
        paraphrases: [
          'Leave the dough to rise until it has doubled in size.',
          'Yeast needs a warm spot and an hour or two to make the loaf puff up.',
          'Proof the bread in a warm kitchen until it is twice as big.',
        ],
        query: 'how do I know when my yeast dough has risen enough',
      },
      {
        id: 'onion-caramelize',
        topic: 'Caramelizing onions',
        paraphrases: [
          'Caramelize onions slowly over low heat for forty minutes.',
          'Sweet brown onions need patience and a low flame.',
          'Cook sliced onions gently until they turn golden and jammy.',
        ],
        query: 'making shallots jammy and golden for a burger topping',
      },
    ],
  },
  {
    name: 'Gardening',
    background: [
      'Healthy soil is the foundation of every garden.',
      'Walk through the beds every morning to spot problems early.',
      'Mulch keeps weeds down and the ground moist.',
    ],
    facts: [
      {
        id: 'tomato-water',
        topic: 'Watering tomatoes',
        paraphrases: [
          'Water tomato plants deeply at the base in the early morning.',
          'Soak the roots of tomatoes at dawn rather than spraying the leaves.',
          'Give tomatoes a long drink at soil level before the day gets hot.',
        ],
        query: 'best time of day to irrigate my tomato vines',
      },
      {
        id: 'aphids',
        topic: 'Aphid control',
        paraphrases: [
          'Spray aphids off roses with a strong jet of water.',
          'Ladybugs eat the small green insects that cluster on new shoots.',
          'Soapy water gets rid of greenfly on the buds.',
        ],
        query: 'tiny green bugs covering my rose stems',
      },
      {
        id: 'compost',
        topic: 'Making compost',
        paraphrases: [
          'Mix green kitchen scraps with brown dry leaves in the compost heap.',
          'Turn the compost pile every week so it breaks down faster.',
          'A good compost bin balances nitrogen-rich waste with carbon-rich material.',
        ],
        query: 'how to turn food waste into soil',
      },
      {
        id: 'prune-roses',
        topic: 'Pruning roses',
        paraphrases: [
          'Prune roses in late winter just above an outward-facing bud.',
          'Cut back rose bushes before spring growth starts.',
          'Trim the canes of rosebushes at the end of the cold season.',
        ],
        query: 'when should I cut back my rosebush',
      },
      {
        id: 'seedlings',
        topic: 'Hardening off seedlings',
        paraphrases: [
          'Harden off seedlings by setting them outside a little longer each day.',
          'Young plants raised indoors need a week of gradual exposure before transplanting.',
          'Acclimatize sprouts to wind and sun slowly before planting them out.',
        ],
        query: 'moving baby plants from the windowsill to the garden',
      },
    ],
  },
  {
    name: 'Running',
    background: [
      'Consistency beats intensity for most runners.',
      'Good shoes and a steady pace prevent most injuries.',
      'Log every session to see progress over months.',
    ],
    facts: [
      {
        id: 'long-run',
        topic: 'The weekly long run',
        paraphrases: [
          'Build endurance with one slow long run every week.',
          'A relaxed distance outing each weekend grows aerobic capacity.',
          'Run far and easy once a week to prepare for a marathon.',
        ],
        query: 'training stamina for a marathon',
      },
      {
        id: 'intervals',
        topic: 'Interval training',
        paraphrases: [
          'Interval sessions alternate fast repeats with easy jogging.',
          'Sprint four hundred metres, recover, and repeat to gain speed.',
          'Short hard efforts with rests in between make you quicker.',
        ],
        query: 'workouts to get faster at the 5k',
      },
      {
        id: 'shin-splints',
        topic: 'Shin splints',
        paraphrases: [
          'Shin splints come from increasing mileage too quickly.',
          'Pain along the front of the lower leg means you ramped up distance too fast.',
          'Sore tibias are a classic sign of overtraining in new runners.',
        ],
        query: 'my lower legs hurt after I started jogging more',
      },
      {
        id: 'hydration',
        topic: 'Hydration on hot days',
        paraphrases: [
          'Drink water before and during runs in hot weather.',
          'Carry fluids and electrolytes when the temperature climbs.',
          'Dehydration in summer heat slows you down and can be dangerous.',
        ],
        query: 'staying hydrated on a sweltering jog',
      },
      {
        id: 'taper',
        topic: 'Tapering before a race',
        paraphrases: [
          'Reduce your weekly mileage in the two weeks before race day.',
          'Tapering lets the legs recover so they are fresh at the start line.',
          'Cut training volume before the marathon to arrive rested.',
        ],
        query: 'easing off training ahead of the big event',
      },
    ],
  },
  {
    name: 'Databases',
    background: [
      'Measure before you tune anything in the database.',
      'Every query plan tells a story about the data.',
      'Backups that were never restored are not backups.',
    ],
    facts: [
      {
        id: 'missing-index',
        topic: 'Sequential scans',
        paraphrases: [
          'A missing index forces PostgreSQL into a sequential scan of the whole table.',
          'Without an index the planner reads every row to answer the query.',
          'Slow lookups often mean the table is scanned from start to finish.',
        ],
        query: 'why is my postgres query reading all rows',
      },
      {
        id: 'vacuum',
        topic: 'Vacuum and bloat',
        paraphrases: [
          'Autovacuum removes dead tuples and keeps tables from bloating.',
          'Deleted rows leave garbage behind until vacuum reclaims the space.',
          'Table bloat grows when vacuum cannot keep up with updates.',
        ],
        query: 'cleaning up dead rows after many deletes',
      },
      {
        id: 'connection-pool',
        topic: 'Connection pooling',
        paraphrases: [
          'Use a connection pooler so thousands of clients share a few backends.',
          'Each Postgres connection is a process, so pool them with pgbouncer.',
          'Too many open sessions exhaust server memory; put a pool in front.',
        ],
        query: 'postgres runs out of connection slots under load',
      },
      {
        id: 'explain',
        topic: 'Reading EXPLAIN',
        paraphrases: [
          'EXPLAIN ANALYZE shows the real time spent in each plan node.',
          'Run the query with explain analyze to see where the milliseconds go.',
          'The execution plan reveals which step of a slow statement is expensive.',
        ],
        query: 'profiling a sluggish query to find the bottleneck',
      },
      {
        id: 'replication',
        topic: 'Streaming replication',
        paraphrases: [
          'Streaming replication ships the write-ahead log to a standby server.',
          'A hot standby replays WAL records from the primary to stay in sync.',
          'Replicas follow the primary by applying its transaction log.',
        ],
        query: 'keeping a second copy of the database up to date',
      },
    ],
  },
  {
    name: 'Personal finance',
    background: [
      'Small regular habits add up over decades.',
      'Know where every euro goes each month.',
      'Fees eat returns quietly, year after year.',
    ],
    facts: [
      {
        id: 'emergency-fund',
        topic: 'Emergency fund',
        paraphrases: [
          'Keep three to six months of expenses in an emergency fund.',
          'A cash cushion covers a lost job or a broken car without debt.',
          'Save a rainy day reserve before you start investing.',
        ],
        query: 'how much money to put aside for unexpected costs',
      },
      {
        id: 'index-funds',
        topic: 'Index funds',
        paraphrases: [
          'Low-cost index funds track the whole market for a tiny fee.',
          'Buying a broad ETF beats picking individual stocks for most savers.',
          'Passive funds that mirror the market usually outperform active managers.',
        ],
        query: 'cheap way to invest in the stock market',
      },
      {
        id: 'credit-card-debt',
        topic: 'Credit card debt',
        paraphrases: [
          'Pay off high-interest credit card balances first.',
          'Card debt at twenty percent interest grows faster than any investment.',
          'Clear the plastic with the highest rate before anything else.',
        ],
        query: 'which loan should I repay first',
      },
      {
        id: 'budget',
        topic: 'Monthly budget',
        paraphrases: [
          'Track spending in categories with a simple monthly budget.',
          'Write down income and outgoings to see where the money leaks.',
          'A spreadsheet of expenses shows which habits cost the most.',
        ],
        query: 'figuring out where my salary disappears',
      },
      {
        id: 'compound-interest',
        topic: 'Compound interest',
        paraphrases: [
          'Compound interest makes early savings grow the most.',
          'Returns earned on past returns snowball over decades.',
          'Starting to save at twenty-five beats saving twice as much at forty-five.',
        ],
        query: 'why start putting money away when young',
      },
    ],
  },
  {
    name: 'Travel in Japan',
    background: [
      'Trains in Japan run to the minute.',
      'Carry some cash; not every shop takes cards.',
      'Quiet manners on public transport are expected.',
    ],
    facts: [
      {
        id: 'rail-pass',
        topic: 'The rail pass',
        paraphrases: [
          'The Japan Rail Pass covers most shinkansen trips for a fixed price.',
          'A national train pass pays off if you ride the bullet train several times.',
          'Tourists can buy unlimited rail travel across the country for one or two weeks.',
        ],
        query: 'is the bullet train ticket for visitors worth it',
      },
      {
        id: 'ic-card',
        topic: 'IC cards',
        paraphrases: [
          'A Suica card pays for subways, buses and convenience stores with a tap.',
          'Load money on a rechargeable transit card instead of buying paper tickets.',
          'Tap-to-pay travel cards work on city metros across the country.',
        ],
        query: 'easiest way to pay for the Tokyo metro',
      },
      {
        id: 'cherry-blossom',
        topic: 'Cherry blossom season',
        paraphrases: [
          'Cherry blossoms peak in Tokyo and Kyoto in late March or early April.',
          'Sakura season draws crowds to parks for hanami picnics.',
          'Spring flowering of the cherry trees lasts only about a week.',
        ],
        query: 'when to visit to see the pink spring flowers',
      },
      {
        id: 'ryokan',
        topic: 'Staying in a ryokan',
        paraphrases: [
          'A ryokan is a traditional inn with tatami rooms and hot spring baths.',
          'Guests at a Japanese inn sleep on futons and eat a multi-course dinner.',
          'Old-style guesthouses serve kaiseki meals and have onsen.',
        ],
        query: 'sleeping on the floor in a traditional guesthouse',
      },
      {
        id: 'tipping',
        topic: 'Tipping',
        paraphrases: [
          'Tipping is not customary in Japan and can cause confusion.',
          'Leaving extra money for a waiter is unusual in Japanese restaurants.',
          'Service is included; staff may chase you to return a tip.',
        ],
        query: 'should I leave a gratuity at restaurants there',
      },
    ],
  },
  {
    name: 'Guitar',
    background: [
      'Practise slowly with a metronome before speeding up.',
      'Short daily sessions beat one long weekly session.',
      'Record yourself to hear what needs work.',
    ],
    facts: [
      {
        id: 'barre-chords',
        topic: 'Barre chords',
        paraphrases: [
          'Barre chords need the index finger pressed flat across all six strings.',
          'To play an F major shape, lay your first finger across the fretboard.',
          'Buzzing barre shapes usually mean the thumb is in the wrong place.',
        ],
        query: 'my F chord buzzes when I press across every string',
      },
      {
        id: 'tuning',
        topic: 'Tuning',
        paraphrases: [
          'Tune the guitar to standard pitch before every practice.',
          'Use a clip-on tuner so each string matches E A D G B E.',
          'Strings drift flat with temperature, so check the pitch often.',
        ],
        query: 'my instrument sounds out of key',
      },
      {
        id: 'calluses',
        topic: 'Sore fingertips',
        paraphrases: [
          'Fingertips hurt for the first weeks until calluses form.',
          'Sore fingers are normal for beginners pressing steel strings.',
          'Hard skin builds up on the fingertips after a few weeks of playing.',
        ],
        query: 'tips of my fingers ache after practising',
      },
      {
        id: 'strumming',
        topic: 'Strumming patterns',
        paraphrases: [
          'Keep the strumming hand moving down and up in a steady rhythm.',
          'A relaxed wrist makes strum patterns sound even.',
          'Count eighth notes aloud while you strum to keep time.',
        ],
        query: 'keeping a steady rhythm with my right hand',
      },
      {
        id: 'string-change',
        topic: 'Changing strings',
        paraphrases: [
          'Change guitar strings every few months or when they sound dull.',
          'Old strings lose brightness and will not stay in tune.',
          'Fresh strings bring back a bright tone.',
        ],
        query: 'how often to replace the wires on an acoustic',
      },
    ],
  },
  {
    name: 'Kubernetes',
    background: [
      'Declarative manifests describe the desired state of the cluster.',
      'Every change should go through version control.',
      'Watch the events when something does not start.',
    ],
    facts: [
      {
        id: 'crashloop',
        topic: 'CrashLoopBackOff',
        paraphrases: [
          'A pod in CrashLoopBackOff keeps failing right after it starts.',
          'When a container exits again and again, Kubernetes waits longer between restarts.',
          'Check the container logs of a pod that restarts in a loop.',
        ],
        query: 'my container keeps restarting over and over',
      },
      {
        id: 'resource-limits',
        topic: 'Resource limits',
        paraphrases: [
          'Set CPU and memory requests and limits on every container.',
          'A pod without memory limits can starve its neighbours on the node.',
          'OOMKilled means the container used more memory than its limit allowed.',
        ],
        query: 'pod killed for using too much RAM',
      },
      {
        id: 'rolling-update',
        topic: 'Rolling updates',
        paraphrases: [
          'A deployment rolls out new pods gradually and can roll back.',
          'Rolling updates replace old replicas a few at a time without downtime.',
          'Use kubectl rollout undo to return to the previous version.',
        ],
        query: 'ship a new version without taking the site down',
      },
      {
        id: 'readiness',
        topic: 'Readiness probes',
        paraphrases: [
          'A readiness probe keeps traffic away until the app can serve it.',
          'The service only sends requests to pods whose health check passes.',
          'Without a ready check, users hit containers that are still booting.',
        ],
        query: 'stop sending requests to an app that is still starting',
      },
      {
        id: 'configmap',
        topic: 'ConfigMaps and Secrets',
        paraphrases: [
          'Store configuration in ConfigMaps and credentials in Secrets.',
          'Mount settings as files or environment variables instead of baking them into the image.',
          'Keep passwords out of container images by using secret objects.',
        ],
        query: 'where to put database passwords for my pods',
      },
    ],
  },
]

export const MESSAGE_OPENERS = [
  'Quick question:',
  'Note to self:',
  'Just learned this:',
  'Reminder for the team:',
  "From yesterday's discussion:",
  'Heads up,',
]
